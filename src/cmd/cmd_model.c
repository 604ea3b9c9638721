/* fedhpc model: a model on its own, without a run.
 *
 * Without --forward or --save it prints the layer table of the deck's model
 * (model.arch, or the layer list model.layers with model.arch = layers, so a
 * network is checked before a run; docs/layer-lists.md): per layer its
 * module, what it reads, its output shape and FLOPs; per parameter its state_dict name, shape, offset in the flat buffer
 * and whether LIPS counts it as a middle layer; BatchNorm buffers likewise.
 * The input shape and class count come from the deck's data set (read without
 * loading samples), or from --input C,H,W and --classes N.
 *
 * With --weights MODEL.h5 the model is the file's (its arch, input_shape and
 * num_classes attributes; model.hidden still comes from the deck for an mlp,
 * model.layers for arch = layers, as analysis/torch_to_deck.py writes),
 * with its parameters and running statistics loaded. Then
 *   --forward X.h5 --out Y.h5   writes the evaluation-mode logits of the
 *                               samples in X.h5's dataset "x" [N, C, H, W]
 *                               (or [N, C*H*W]) as Y.h5's "logits" [N, classes]
 *   --save OUT.h5               writes the model file again as fedhpc writes
 *                               it (analysis/torch_to_h5.py and h5_to_torch.py
 *                               move such files to and from PyTorch).
 * Rank 0 does the work; the other ranks only agree on errors. */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "data/dataset.h"
#include "io/h5util.h"
#include "io/model_file.h"
#include "nn/model.h"

enum { OPT_INPUT, OPT_CLASSES, OPT_BATCH, OPT_WEIGHTS, OPT_FORWARD, OPT_OUT, OPT_SAVE, NOPTS };

/* "3,32,32" -> shape; 0 or an FH_ERR_USAGE error. */
static int parse_shape(const char *s, int shape[3]) {
  char tail;
  if (sscanf(s, "%d,%d,%d%c", &shape[0], &shape[1], &shape[2], &tail) != 3 || shape[0] < 1 ||
      shape[1] < 1 || shape[2] < 1)
    return FH_FAIL(FH_ERR_USAGE, "--input '%s': expected C,H,W with positive sizes, e.g. 3,32,32",
                   s);
  return 0;
}

/* The logits of every sample of x_path's "x" into out_path's "logits". */
static int forward_file(fh_model *m, const char *x_path, const char *out_path) {
  hid_t f = H5Fopen(x_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_DATA, "--forward %s: cannot open the HDF5 file", x_path);
  hid_t d = H5Dopen2(f, "x", H5P_DEFAULT);
  if (d < 0) {
    H5Fclose(f);
    return FH_FAIL(FH_ERR_DATA, "--forward %s: no dataset 'x' [N, C, H, W] of samples", x_path);
  }
  hid_t sp = H5Dget_space(d);
  hsize_t dims[8] = {0};
  const int nd = H5Sget_simple_extent_ndims(sp);
  int rc = 0;
  if (nd < 1 || nd > 8) rc = FH_FAIL(FH_ERR_DATA, "--forward %s: 'x' has %d dimensions", x_path, nd);
  if (rc == 0) H5Sget_simple_extent_dims(sp, dims, NULL);
  const size_t n = rc == 0 ? (size_t)dims[0] : 0;
  size_t per = 1;
  for (int k = 1; k < nd; k++) per *= (size_t)dims[k];
  const size_t d_in = fh_model_input_size(m);
  if (rc == 0 && (n == 0 || per != d_in))
    rc = FH_FAIL(FH_ERR_DATA,
                 "--forward %s: 'x' holds %zu samples of %zu values; the model (%s) takes %zu",
                 x_path, n, per, fh_model_arch(m), d_in);
  float *x = rc == 0 ? fh_malloc(n * d_in * sizeof(float)) : NULL;
  if (rc == 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
    rc = FH_FAIL(FH_ERR_DATA, "--forward %s: cannot read 'x' as float32", x_path);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  if (rc) {
    free(x);
    return rc;
  }
  const int C = fh_model_num_classes(m), mb = fh_model_max_batch(m);
  float *logits = fh_malloc(n * (size_t)C * sizeof(float));
  for (size_t start = 0; start < n; start += (size_t)mb) {
    const int b = n - start < (size_t)mb ? (int)(n - start) : mb;
    const float *z = fh_model_forward(m, x + start * d_in, b, 0);
    memcpy(logits + start * (size_t)C, z, (size_t)b * C * sizeof(float));
  }
  hid_t o = H5Fcreate(out_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (o < 0) {
    rc = FH_FAIL(FH_ERR_OUTPUT, "--out %s: cannot create the file; check the folder is writable",
                 out_path);
  } else {
    const hsize_t od[2] = {(hsize_t)n, (hsize_t)C};
    rc = fh_h5_write(o, "logits", H5T_NATIVE_FLOAT, 2, od, logits);
    if (rc == 0) rc = fh_h5_attr_str(o, "arch", fh_model_arch(m));
    if (H5Fclose(o) < 0 && rc == 0) rc = FH_FAIL(FH_ERR_OUTPUT, "--out %s: cannot close", out_path);
  }
  free(x);
  free(logits);
  return rc;
}

int fh_cmd_model(int argc, char **argv) {
  static const char *const opts[] = {"--input", "--classes", "--batch", "--weights",
                                     "--forward", "--out",   "--save",  NULL};
  const char *vals[NOPTS] = {NULL};
  /* A model file names its own architecture: set it after the user's keys. */
  const char *weights = NULL;
  for (int i = 0; i + 1 < argc; i++)
    if (strcmp(argv[i], "--weights") == 0) weights = argv[i + 1];
  int rc = 0, shape[3] = {0, 0, 0}, classes = 0;
  char arch[64] = "", arch_set[96];
  if (weights) rc = fh_model_file_info(weights, arch, sizeof arch, shape, &classes);
  FH_TRY(fh_error_agree(MPI_COMM_WORLD, rc));
  char **args = fh_calloc((size_t)argc + 2, sizeof(char *));
  memcpy(args, argv, (size_t)argc * sizeof(char *));
  int nargs = argc;
  if (weights) {
    snprintf(arch_set, sizeof arch_set, "model.arch=%s", arch);
    args[nargs++] = "--set";
    args[nargs++] = arch_set;
  }
  fh_config *cfg = NULL;
  rc = fh_load_config_from_args(nargs, args, 0, &cfg, opts, vals);
  free(args);
  FH_TRY(rc);

  const int B = vals[OPT_BATCH] ? atoi(vals[OPT_BATCH]) : (vals[OPT_FORWARD] ? 64 : 1);
  if (B < 1) rc = FH_FAIL(FH_ERR_USAGE, "--batch '%s': expected a positive batch size", vals[OPT_BATCH]);
  if (rc == 0 && (vals[OPT_FORWARD] || vals[OPT_SAVE]) && !weights)
    rc = FH_FAIL(FH_ERR_USAGE, "--forward and --save need --weights MODEL.h5");
  if (rc == 0 && !vals[OPT_FORWARD] != !vals[OPT_OUT])
    rc = FH_FAIL(FH_ERR_USAGE, "--forward X.h5 and --out Y.h5 go together");
  if (rc == 0 && vals[OPT_INPUT]) rc = parse_shape(vals[OPT_INPUT], shape);
  if (rc == 0 && vals[OPT_CLASSES]) {
    classes = atoi(vals[OPT_CLASSES]);
    if (classes < 1) rc = FH_FAIL(FH_ERR_USAGE, "--classes '%s': expected a positive count", vals[OPT_CLASSES]);
  }
  if (rc == 0 && !weights && (!vals[OPT_INPUT] || !vals[OPT_CLASSES])) {
    /* The data set's sample shape and classes, with no client loaded. */
    fh_dataset *ds = NULL;
    rc = fh_dataset_load(&ds, cfg, 0, 0, 0, 1);
    if (rc == 0) {
      if (!vals[OPT_INPUT]) shape[0] = ds->c, shape[1] = ds->h, shape[2] = ds->w;
      if (!vals[OPT_CLASSES]) classes = ds->num_classes;
    }
    fh_dataset_free(ds);
  }
  fh_model *m = NULL;
  int outputs = classes; /* model.outputs when the deck sets it */
  if (rc == 0) rc = fh_model_outputs(cfg, classes, &outputs);
  if (rc == 0) rc = fh_model_create(&m, cfg, shape[0], shape[1], shape[2], outputs, B);
  rc = fh_error_agree(MPI_COMM_WORLD, rc);
  if (rc == 0 && fh_log_rank() == 0) {
    if (weights) {
      rc = fh_model_load_params(weights, m, fh_model_params(m));
      if (rc == 0) rc = fh_model_load_buffers(weights, m, fh_model_buffers(m));
    }
    if (rc == 0 && vals[OPT_FORWARD]) {
      rc = forward_file(m, vals[OPT_FORWARD], vals[OPT_OUT]);
      if (rc == 0) fh_info("%s: logits of %s written to %s", fh_model_arch(m), vals[OPT_FORWARD], vals[OPT_OUT]);
    }
    if (rc == 0 && vals[OPT_SAVE]) {
      rc = fh_model_save(vals[OPT_SAVE], m, fh_model_params(m), shape, NULL);
      if (rc == 0) fh_info("%s: model written to %s", fh_model_arch(m), vals[OPT_SAVE]);
    }
    if (rc == 0 && !vals[OPT_FORWARD] && !vals[OPT_SAVE]) {
      fh_model_print_table(m, stdout, B);
      fflush(stdout);
    }
  }
  rc = fh_error_agree(MPI_COMM_WORLD, rc);
  fh_model_free(m);
  fh_config_free(cfg);
  return rc;
}
