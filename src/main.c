/* fedhpc: federated learning simulated at cluster scale with MPI.
 * The CLI: run, pretrain, info, bench, partition, model, encode, help. Every
 * command is collective over MPI_COMM_WORLD; rank 0 speaks for the run; errors
 * end every rank with the same exit code after one line from rank 0. */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "fl/algorithm.h"
#include "io/h5util.h"

static const char *usage =
    "usage: fedhpc COMMAND [ARGS]   (launch with mpirun -np P or srun)\n"
    "\n"
    "commands:\n"
    "  run DECK [--set section.key=value ...] [--resume RUN_DIR]\n"
    "        run the federated experiment the INI deck describes; writes\n"
    "        output.dir/NAME/{config.ini,metrics.h5,profile.h5,model.h5}\n"
    "        (and checkpoint.h5); --resume continues a run from its checkpoint\n"
    "  info  versions of the linked MPI, HDF5, OpenBLAS, ScaLAPACK and PAPI, and\n"
    "        the PAPI events this machine can count\n"
    "  bench [DECK] [--set ...] [--batch B] [--reps N] [--input C,H,W]\n"
    "        training steps (MLP, cnn1, resnet8, or the deck's model) against\n"
    "        cblas_sgemm, with the time per layer, and the reduction against\n"
    "        memcpy of the same buffer (ratios)\n"
    "  model [DECK] [--set ...] [--input C,H,W] [--classes N] [--weights M.h5 ...]\n"
    "        the layer table of the deck's model: shapes, state_dict names,\n"
    "        offsets in the parameter buffer, FLOPs, LIPS middle layers; with a\n"
    "        model file, its logits on samples of an HDF5 file\n"
    "  pretrain DECK [--set ...] [--resume]\n"
    "        train the server's pretrained model (pm.*, pretrain.*) on the rows\n"
    "        held out for the server (data.server_fraction), data-parallel over\n"
    "        all ranks; writes pm.path (AugFL reads it)\n"
    "  partition DECK [--set ...] [--out FILE]\n"
    "        deal the deck's dataset to its clients (partition.*) without\n"
    "        training: summary on stdout, client x class counts in partition.h5\n"
    "  encode DECK [--set ...]\n"
    "        a trained model.h5 (encode.model) as a frozen encoder: writes the\n"
    "        deck's data set as a feature file (docs/features.md) with class\n"
    "        embeddings from the encoder's training data (run.algorithm = fstcbdg)\n"
    "  check RUN_DIR\n"
    "        verify RUN_DIR/checkpoint.h5 without resuming: every dataset\n"
    "        against its checksum, the global model for non-finite values\n"
    "  help [COMMAND | keys | algorithms [--tests]]\n"
    "        this text, one command's help, every deck key with its type,\n"
    "        default and valid range, or the registered algorithms and add-ons\n"
    "        (--tests: their cases of the registry-driven tests, one per line)\n"
    "\n"
    "exit codes: 0 ok, 1 runtime error, 2 usage, 3 deck/config, 4 dataset,\n"
    "            5 output not writable, 6 loss diverged (NaN/Inf),\n"
    "            75 stopped by SIGTERM/SIGUSR1 after a checkpoint (resume it)\n";

static const char *help_run =
    "usage: fedhpc run DECK [--set section.key=value ...] [--resume RUN_DIR]\n"
    "  Runs the experiment of DECK (INI). Any key can be overridden with --set;\n"
    "  `fedhpc help keys` lists them all. Rank 0 prints a line per round\n"
    "  (round, train loss, test accuracy, round time, ETA) and a summary of the\n"
    "  time per phase (min/mean/max over ranks). Outputs go to\n"
    "  output.dir/output.name (default runs/<deck name>): config.ini, metrics.h5,\n"
    "  profile.h5, model.h5. While running, the HDF5 files are named *.partial;\n"
    "  they get their final names only when the run completes.\n"
    "  checkpoint.every = N writes RUN/checkpoint.h5 every N rounds. SIGTERM or\n"
    "  SIGUSR1 stops the run at the end of the round with a checkpoint and exit\n"
    "  code 75. --resume RUN_DIR continues from RUN_DIR/checkpoint.h5 (on any\n"
    "  number of ranks; outputs go to RUN_DIR) and ends bitwise equal to an\n"
    "  uninterrupted run; the deck may change only run.rounds (to extend),\n"
    "  run.eval_every, run.dedicated_server, output.*, checkpoint.*, profile.*\n"
    "  and state.*: `fedhpc run RUN_DIR/config.ini --resume RUN_DIR`.\n";

static const char *help_bench =
    "usage: fedhpc bench [DECK] [--set ...] [--batch B] [--reps N] [--input C,H,W]\n"
    "  Training steps (forward, loss, backward, SGD) in GFLOP/s as a ratio to\n"
    "  cblas_sgemm's rate on this core (512x512x512), measured in the same run.\n"
    "  Without a deck or --set: the MLP 784-256-256-10 at batch 64 (also against\n"
    "  sgemm on its own shapes), cnn1 at batch 64 and resnet8 at batch 32 on\n"
    "  3x32x32 inputs, each with the share of the step every layer takes, and\n"
    "  cnn1's training samples per second. With a deck: its model at batch B\n"
    "  (default 64) on its data set's sample shape (or --input). Then MPI_Reduce\n"
    "  of the payload's fixed-point accumulator against memcpy of the same bytes.\n"
    "  Times are the fastest of at least N calls (default 10). Run with\n"
    "  OPENBLAS_NUM_THREADS=1, and 2 or more ranks for a meaningful reduction.\n"
    "  --models a,b,... [--batches 10,16,32,64] [--steps N] [--hidden H1,H2]: the\n"
    "  zoo models (mlp on 784 inputs with model.hidden H, default 200,200; the\n"
    "  others on 3x32x32), each batch size timed over N steps (default 20): the\n"
    "  median step in wall and in thread CPU time with its 10th-90th percentile\n"
    "  spread, samples per second and the ratio to sgemm. scripts/bench_vs_torch.py\n"
    "  runs these beside the same models in PyTorch and prints the ratios.\n";

static const char *help_model =
    "usage: fedhpc model [DECK] [--set ...] [--input C,H,W] [--classes N] [--batch B]\n"
    "                    [--weights MODEL.h5 [--forward X.h5 --out Y.h5] [--save OUT.h5]]\n"
    "  Prints the layer table of model.arch: per layer its module, the layers it\n"
    "  reads (two for the join of a residual block), its output shape and its\n"
    "  forward and backward MFLOP for a batch of B (default 1); under each layer\n"
    "  its parameters (state_dict name, shape, offset and size in the flat\n"
    "  parameter buffer, 'middle' for the weights LIPS sparsifies) and buffers\n"
    "  (BatchNorm running statistics, offsets in the buffer array). The input\n"
    "  shape and class count come from the deck's data set unless --input and\n"
    "  --classes give them, e.g.\n"
    "    fedhpc model --set model.arch=resnet8 --input 3,32,32 --classes 10\n"
    "  --weights MODEL.h5 takes the model from a model file (a run's model.h5,\n"
    "  or one made by analysis/torch_to_h5.py): its arch, input shape, classes,\n"
    "  parameters and running statistics. Then --forward X.h5 --out Y.h5 writes\n"
    "  the evaluation-mode logits [N, classes] of X.h5's dataset 'x' [N, C, H, W]\n"
    "  (batches of B, default 64), and --save OUT.h5 writes the model file again.\n";

static const char *help_partition =
    "usage: fedhpc partition DECK [--set section.key=value ...] [--out FILE]\n"
    "  Deals the rows of the deck's dataset (data.source = hdf5, data.path) to\n"
    "  run.clients clients as the [partition] keys say (partition.method = iid,\n"
    "  dirichlet, shards, shards_pfedafm, lowdata, lips, twoclass, quantity,\n"
    "  natural; docs/partitioners.md), and each client's test rows after its\n"
    "  train label mix. Prints rows and classes per client and the label skew,\n"
    "  and writes the client x class counts to FILE (default output.dir/NAME/partition.h5);\n"
    "  analysis/plot_partition.py draws it.\n"
    "usage: fedhpc partition --bench [DECK] [--set ...] [--clients K] [--labels N,...]\n"
    "  Times every method on K clients (default 100000) over N random labels of\n"
    "  10 classes (default 60000,6000000).\n";

static const char *help_encode =
    "usage: fedhpc encode DECK [--set section.key=value ...]\n"
    "  The layers of encode.model (a model.h5 fedhpc wrote) before its last\n"
    "  Linear become a frozen encoder. It encodes the deck's [data] pool (train\n"
    "  rows from encode.skip_train on, and the test rows) in blocks over the\n"
    "  ranks, centres the features on the mean feature of the encoder's own\n"
    "  training data (encode.center) and L2-normalises them; the class\n"
    "  embeddings are the normalised class means of those training data's\n"
    "  features. Writes encode.out (default output.dir/NAME/features.h5), the\n"
    "  feature file of docs/features.md, the same on any rank count.\n";

static const char *help_pretrain =
    "usage: fedhpc pretrain DECK [--set section.key=value ...] [--resume]\n"
    "  Trains the server's pretrained model (PM): architecture pm.arch and\n"
    "  pm.hidden (default: the deck's model), on the train-pool rows the deck\n"
    "  holds out for the server (data.server_fraction > 0; no client sees them),\n"
    "  data-parallel over all ranks: the rows are cut into data.server_shards\n"
    "  shards, each step sums every shard's minibatch gradient (pretrain.batch\n"
    "  rows) with one fixed-point reduction, so the model file is bit for bit\n"
    "  the same on any number of ranks. SGD with pretrain.lr, .momentum,\n"
    "  .weight_decay, .schedule for pretrain.epochs epochs; a line per epoch\n"
    "  with the training loss and the global test set's accuracy. Writes\n"
    "  pm.path (default output.dir/<deck name>.pm.h5). pretrain.checkpoint_every\n"
    "  = e writes pm.path.ckpt.h5 every e epochs (and on SIGTERM/SIGUSR1, exit\n"
    "  75); --resume continues from it to the same final model.\n";

static int print_help(int argc, char **argv) {
  if (fh_log_rank() != 0) return 0;
  if (argc > 0 && strcmp(argv[0], "run") == 0) fputs(help_run, stdout);
  else if (argc > 0 && strcmp(argv[0], "bench") == 0) fputs(help_bench, stdout);
  else if (argc > 0 && strcmp(argv[0], "partition") == 0) fputs(help_partition, stdout);
  else if (argc > 0 && strcmp(argv[0], "model") == 0) fputs(help_model, stdout);
  else if (argc > 0 && strcmp(argv[0], "encode") == 0) fputs(help_encode, stdout);
  else if (argc > 0 && strcmp(argv[0], "pretrain") == 0) fputs(help_pretrain, stdout);
  else if (argc > 0 && strcmp(argv[0], "keys") == 0) return fh_cmd_help_keys(argc - 1, argv + 1);
  else if (argc > 0 && strcmp(argv[0], "algorithms") == 0)
    fh_registry_write(stdout, argc > 1 && strcmp(argv[1], "--tests") == 0);
  else if (argc > 0 && strcmp(argv[0], "info") == 0) fputs("usage: fedhpc info\n", stdout);
  else fputs(usage, stdout);
  return 0;
}

int main(int argc, char **argv) {
  /* Open MPI's shared-file-pointer component `sm` (which HDF5 never uses)
   * names a POSIX semaphore after the file's basename (/dev/shm/
   * sem.OMPIO_checkpoint.h5.tmp): runs on one node share it, and a writer
   * killed mid-write leaves it locked, so that a later checkpoint write hangs.
   * Left out unless the environment chooses the components itself. */
  setenv("OMPI_MCA_sharedfp", "^sm", 0);
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  fh_log_set_rank(rank);
  /* HDF5's own error stack would print many lines per failure; every failing
   * call is turned into one fedhpc message instead. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

  int rc;
  const char *cmd = argc > 1 ? argv[1] : NULL;
  int has_help = 0;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) has_help = 1;
  if (!cmd) {
    if (rank == 0) fputs(usage, stderr);
    rc = FH_FAIL(FH_ERR_USAGE, "no command given (see above)");
  } else if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    rc = print_help(0, NULL);
  } else if (strcmp(cmd, "help") == 0) {
    rc = print_help(argc - 2, argv + 2);
  } else if (has_help) {
    char *sub[1] = {argv[1]};
    rc = print_help(1, sub);
  } else if (strcmp(cmd, "run") == 0) {
    rc = fh_cmd_run(argc - 2, argv + 2);
  } else if (strcmp(cmd, "info") == 0) {
    rc = fh_cmd_info(argc - 2, argv + 2);
  } else if (strcmp(cmd, "bench") == 0) {
    rc = fh_cmd_bench(argc - 2, argv + 2);
  } else if (strcmp(cmd, "partition") == 0) {
    rc = fh_cmd_partition(argc - 2, argv + 2);
  } else if (strcmp(cmd, "pretrain") == 0) {
    rc = fh_cmd_pretrain(argc - 2, argv + 2);
  } else if (strcmp(cmd, "model") == 0) {
    rc = fh_cmd_model(argc - 2, argv + 2);
  } else if (strcmp(cmd, "check") == 0) {
    rc = fh_cmd_check(argc - 2, argv + 2);
  } else if (strcmp(cmd, "encode") == 0) {
    rc = fh_cmd_encode(argc - 2, argv + 2);
  } else {
    rc = FH_FAIL(FH_ERR_USAGE, "unknown command '%s' (commands: run, pretrain, info, bench, partition, model, encode, check, help)", cmd);
  }
  if (rc != 0 && fh_error_msg()[0]) fh_report_error();
  /* A file left open after a failed write (io/h5util.h) would crash HDF5's
   * shutdown inside MPI_Finalize: then every rank ends here with the code. */
  int left = fh_h5_files_left_open(), any = 0;
  MPI_Allreduce(&left, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any) {
    fflush(NULL);
    _exit(rc ? rc : FH_ERR_OUTPUT);
  }
  MPI_Finalize();
  return rc;
}
