/* Creating a run: keys of [run] and [output], client placement, data, model,
 * initial global payload, the algorithm's state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/paths.h"
#include "core/rng.h"
#include "fl/addon.h"
#include "fl/evaluate.h"
#include "fl/payload.h"
#include "fl/run.h"

/* run.algorithm's choices are filled from the registry by fh_run_keys_prepare. */
fh_key_spec fh_run_keys_table[] = {
    {"run.algorithm", FH_T_ENUM, "fedavg", 0, 0, "fedavg", "federated algorithm"},
    {"run.rounds", FH_T_INT, "50", 1, 1e8, NULL, "communication rounds"},
    {"run.seed", FH_T_INT, "1", 0, 9.2e18, NULL, "seed of every random stream of the run"},
    {"run.clients", FH_T_INT, "100", 1, 1e8, NULL, "number of simulated clients K"},
    {"run.clients_per_round", FH_T_INT, "0", 0, 1e8, NULL,
     "clients sampled per round; 0 = use run.client_fraction"},
    {"run.client_fraction", FH_T_REAL, "0.1", 1e-9, 1, NULL,
     "fraction of clients sampled per round (at least one)"},
    {"run.dedicated_server", FH_T_BOOL, "false", 0, 0, NULL,
     "rank 0 hosts no clients (needs 2 or more ranks)"},
    {"run.eval_every", FH_T_INT, "1", 1, 1e8, NULL, "evaluate every e rounds (and after the last)"},
    {"run.eval_batch", FH_T_INT, "256", 1, 1 << 20, NULL, "batch size of evaluation"},
    {"run.allreduce", FH_T_BOOL, "true", 0, 0, NULL,
     "where the algorithm's server step may run on every rank (`fedhpc help algorithms`: [server step on every "
     "rank]): one allreduce of the clients' sum and the step on every rank, instead of a reduction to rank 0, "
     "the step there and a broadcast; false: always the latter (the same bits either way)"},
    {"run.accum_bits", FH_T_INT, "32", 8, 48, NULL,
     "fraction bits of the fixed-point accumulation (rank-count invariant sums)"},
    {"run.schedule", FH_T_ENUM, "static", 0, 0, "static|balanced",
     "which rank trains a sampled client: static = its host; balanced = dealt to ranks by estimated cost each "
     "round (longest first), its rows and state moving with it (src/fl/schedule.h); results are identical"},
    {"run.schedule_bandwidth", FH_T_REAL, "0", 0, 1e15, NULL,
     "bytes/s assumed for moving a client under run.schedule = balanced; 0 = measured from the run's own moves"},
    {"output.dir", FH_T_STRING, "runs", 0, 0, NULL, "folder that receives the run's folder"},
    {"output.name", FH_T_STRING, "", 0, 0, NULL,
     "name of the run's folder; default: the deck's file name without .ini"},
    {"output.save_model", FH_T_BOOL, "true", 0, 0, NULL, "write the final global model.h5"},
    FH_KEYS_END};
const fh_key_spec *const fh_run_keys = fh_run_keys_table;

void fh_run_keys_prepare(void) { fh_run_keys_table[0].choices = fh_algorithm_choices(); }

/* RUN = output.dir / (output.name or the deck's file name without .ini). */
int fh_run_dir_path(const fh_config *cfg, char *out, size_t len) {
  char base[256];
  FH_TRY(fh_run_name(cfg, "run", base, sizeof base));
  snprintf(out, len, "%s/%s", fh_cfg_str(cfg, "output.dir"), base);
  return 0;
}

/* A long setup says where it is: one line per finished stage once the setup
 * has taken more than a few seconds (rank 0). */
/* The algorithms whose every use of the model goes through its logits (loss,
 * softmax, argmax over fh_model_num_classes), so model.outputs > classes is
 * honoured; the others size heads, prototypes or logit tables by the data
 * set's classes and are refused it. */
static int model_only_logits(const char *alg) {
  static const char *const ok[] = {"fedavg", "fedprox", "perfedavg", "scaffold", "local", "augfl"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (strcmp(alg, ok[i]) == 0) return 1;
  return 0;
}

static void setup_stage_done(const char *stage, double t0) {
  const double t = MPI_Wtime() - t0;
  if (t > 3.0) fh_info("setup: %s ready, %.1f s so far", stage, t);
}

int fh_run_create(fh_run **out, const fh_config *cfg, MPI_Comm comm) {
  return fh_run_create_at(out, cfg, comm, NULL);
}

int fh_run_create_at(fh_run **out, const fh_config *cfg, MPI_Comm comm, const char *run_dir) {
  fh_run *run = fh_calloc(1, sizeof *run);
  *out = run;
  if (run_dir)
    snprintf(run->dir, sizeof run->dir, "%s", run_dir);
  else
    FH_TRY(fh_run_dir_path(cfg, run->dir, sizeof run->dir));
  run->comm = comm;
  MPI_Comm_rank(comm, &run->rank);
  MPI_Comm_size(comm, &run->nranks);
  run->cfg = cfg;
  run->seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  run->rounds = (int)fh_cfg_int(cfg, "run.rounds");
  run->alg = fh_algorithm_find(fh_cfg_str(cfg, "run.algorithm"));
  run->map.num_clients = (int)fh_cfg_int(cfg, "run.clients");
  run->map.nranks = run->nranks;
  run->map.dedicated_server = fh_cfg_bool(cfg, "run.dedicated_server");
  if (run->map.dedicated_server && run->nranks < 2)
    return FH_FAIL(FH_ERR_CONFIG, "run.dedicated_server = true needs at least 2 MPI ranks (this run has 1); "
                                  "set it to false or launch more ranks");
  int workers = run->nranks - (run->map.dedicated_server ? 1 : 0);
  if (workers > run->map.num_clients)
    fh_warn("%d of %d ranks host no client (run.clients = %d): they only join the collectives",
            workers - run->map.num_clients, run->nranks, run->map.num_clients);
  fh_client_block(&run->map, run->rank, &run->first_client, &run->nlocal);

  fh_memory_node_init(comm); /* what fh_memory_reserve checks against */
  const double t_setup = MPI_Wtime();
  int rc = fh_dataset_load(&run->data, cfg, run->first_client, run->nlocal, run->rank, run->nranks);
  FH_TRY(fh_error_agree(comm, rc));
  /* add-ons that change the data (FedGC's generated samples) before anything reads them */
  FH_TRY(fh_addons_enable(run));
  FH_TRY(fh_addons_data_ready(run));
  setup_stage_done("data", t_setup);

  FH_TRY(fh_error_agree(comm, fh_run_memory_check(run)));
  int maxb = (int)fh_cfg_int(cfg, "train.batch_size");
  int evb = (int)fh_cfg_int(cfg, "run.eval_batch");
  int outputs = 0;
  rc = fh_model_outputs(cfg, run->data->num_classes, &outputs);
  if (rc == 0 && outputs != run->data->num_classes && !model_only_logits(run->alg->name))
    rc = FH_FAIL(FH_ERR_CONFIG, "model.outputs = %d (the data set has %d classes) is not supported by "
                                "run.algorithm = %s, which sizes its own heads by the classes; set model.outputs = 0",
                 outputs, run->data->num_classes, run->alg->name);
  if (rc == 0)
    rc = fh_model_create(&run->model, cfg, run->data->c, run->data->h, run->data->w, outputs,
                         maxb > evb ? maxb : evb);
  FH_TRY(fh_error_agree(comm, rc));

  /* theta^0 from the run seed: every rank draws the same values itself. */
  fh_rng init;
  fh_rng_init(&init, run->seed, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(run->model, &init);
  run->model_n = run->payload_n = fh_model_state_len(run->model);
  run->global = fh_malloc(run->payload_n * sizeof(float));
  fh_model_store_state(run->model, run->global);

  FH_TRY(fh_holdout_draw(cfg, run->seed, run->map.num_clients, &run->holdout, &run->nholdout));
  FH_TRY(fh_eval_check(cfg, run->alg, run->nholdout));
  if (run->nholdout > 0) {
    run->train_ids = fh_malloc((size_t)(run->map.num_clients - run->nholdout) * sizeof(int));
    for (int k = 0, h = 0, n = 0; k < run->map.num_clients; k++) {
      if (h < run->nholdout && run->holdout[h] == k) h++;
      else run->train_ids[n++] = k;
    }
  }

  /* The store exists before the algorithm's setup, which declares its fields. */
  FH_TRY(fh_client_store_create(&run->state, cfg, comm, run->map.num_clients, run->first_client, run->nlocal,
                                run->dir));

  rc = run->alg->setup ? run->alg->setup(run) : 0;
  FH_TRY(fh_error_agree(comm, rc));
  setup_stage_done(run->alg->name, t_setup);
  /* add-ons sit on top of the algorithm (LIPS and the inertia record) */
  FH_TRY(fh_addons_setup(run));
  fh_run_state_memory_check(run);
  return 0;
}

void *fh_run_server_state_typed(fh_run *run, const char *name, fh_state_type type, size_t n) {
  for (int i = 0; i < run->nserver; i++)
    if (strcmp(run->server[i].name, name) == 0) {
      fprintf(stderr, "fedhpc: error: server state '%s' declared twice (programming error)\n", name);
      MPI_Abort(MPI_COMM_WORLD, FH_ERR_RUNTIME);
    }
  if (strlen(name) >= sizeof run->server[0].name || strchr(name, '/') || n == 0) {
    fprintf(stderr, "fedhpc: error: server state '%s' of %zu elements: bad declaration (programming error)\n", name, n);
    MPI_Abort(MPI_COMM_WORLD, FH_ERR_RUNTIME);
  }
  fh_server_vec *grown = fh_calloc((size_t)run->nserver + 1, sizeof *grown);
  if (run->nserver) memcpy(grown, run->server, (size_t)run->nserver * sizeof *grown);
  free(run->server);
  run->server = grown;
  fh_server_vec *v = &run->server[run->nserver++];
  snprintf(v->name, sizeof v->name, "%s", name);
  v->type = type;
  v->n = n;
  v->data = fh_calloc(n, fh_state_type_size(type));
  return v->data;
}

int fh_sorted_index(const int *a, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (a[mid] == k) return mid;
    if (a[mid] < k) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

int fh_run_is_holdout(const fh_run *run, int k) { return fh_sorted_index(run->holdout, run->nholdout, k) >= 0; }

float *fh_run_server_state(fh_run *run, const char *name, size_t n) {
  return fh_run_server_state_typed(run, name, FH_STATE_F32, n);
}

void fh_run_free(fh_run *run) {
  if (!run) return;
  if (run->alg && run->alg->destroy && run->alg_state) run->alg->destroy(run);
  fh_addons_free(run);
  for (int i = 0; i < run->nserver; i++) free(run->server[i].data);
  free(run->server);
  if (run->model) fh_model_free(run->model);
  if (run->data) fh_dataset_free(run->data);
  fh_client_store_free(run->state);
  free(run->global);
  free(run->holdout);
  free(run->train_ids);
  free(run);
}
