/* fedhpc pretrain: the server's pretrained model, trained data-parallel on the
 * server's rows (see pretrain.h for the scheme and why it is rank-count
 * invariant). */
#include "fl/addons/pretrain.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/rng.h"
#include "core/signals.h"
#include "data/dataset.h"
#include "fl/accumulate.h"
#include "fl/blocks/server_shards.h"
#include "io/h5util.h"
#include "io/model_file.h"
#include "nn/optim.h"

const fh_key_spec fh_pretrain_keys[] = {
    {"pm.arch", FH_T_STRING, "", 0, 0, NULL,
     "architecture of the server's pretrained model (a model.arch value); empty = model.arch"},
    {"pm.hidden", FH_T_STRING, "", 0, 0, NULL,
     "mlp: hidden widths of the pretrained model, e.g. 512,512 ('none': softmax regression); empty = "
     "model.hidden"},
    {"pm.path", FH_T_STRING, "", 0, 0, NULL,
     "the pretrained model's file: fedhpc pretrain writes it, AugFL reads it; empty = "
     "output.dir/<deck name>.pm.h5"},
    {"pretrain.epochs", FH_T_INT, "30", 1, 1e6, NULL, "passes over the server's rows"},
    {"pretrain.batch", FH_T_INT, "16", 1, 1 << 20, NULL,
     "rows each server shard contributes to a step (a step's batch: data.server_shards times this)"},
    {"pretrain.lr", FH_T_REAL, "0.05", 0, 1e6, NULL, "SGD learning rate (start of the schedule)"},
    {"pretrain.momentum", FH_T_REAL, "0.9", 0, 1, NULL, "SGD momentum (PyTorch semantics)"},
    {"pretrain.weight_decay", FH_T_REAL, "5e-4", 0, 1e6, NULL, "L2 weight decay added to the gradient"},
    {"pretrain.schedule", FH_T_ENUM, "cosine", 0, 0, "constant|cosine",
     "learning rate per epoch e of E: constant, or lr (1 + cos(pi e / E)) / 2"},
    {"pretrain.checkpoint_every", FH_T_INT, "0", 0, 1e6, NULL,
     "write PM.ckpt.h5 every this many epochs (0: only when a signal stops the run); resume with --resume"},
    FH_KEYS_END};

/* ---- the PM's file and architecture ----------------------------------------------- */

void fh_pm_path(const fh_config *cfg, char *out, size_t len) {
  const char *p = fh_cfg_str(cfg, "pm.path");
  if (p[0]) {
    snprintf(out, len, "%s", p);
    return;
  }
  char base[256];
  fh_deck_name(cfg, "run", base, sizeof base);
  snprintf(out, len, "%s/%s.pm.h5", fh_cfg_str(cfg, "output.dir"), base);
}

int fh_pm_create(fh_model **out, const fh_config *cfg, int c, int h, int w, int C, int max_batch) {
  *out = NULL;
  const char *arch = fh_cfg_str(cfg, "pm.arch"), *hidden = fh_cfg_str(cfg, "pm.hidden");
  char aset[300], hset[300];
  snprintf(aset, sizeof aset, "model.arch=%s", arch[0] ? arch : fh_cfg_str(cfg, "model.arch"));
  if (strcmp(hidden, "none") == 0) {
    snprintf(hset, sizeof hset, "model.hidden=");
  } else if (hidden[0]) {
    snprintf(hset, sizeof hset, "model.hidden=%s", hidden);
  } else { /* the deck's model.hidden, written back as a list */
    long long v[64];
    int n = fh_cfg_intlist(cfg, "model.hidden", v, 64);
    size_t at = (size_t)snprintf(hset, sizeof hset, "model.hidden=");
    for (int i = 0; i < n && i < 64 && at < sizeof hset; i++)
      at += (size_t)snprintf(hset + at, sizeof hset - at, "%s%lld", i ? "," : "", v[i]);
  }
  /* a config of the model keys alone: the PM's architecture */
  const char *sets[2] = {aset, hset};
  const fh_key_spec *tables[1] = {fh_model_keys};
  fh_config *mc = NULL;
  int rc = fh_config_load(&mc, NULL, sets, 2, tables, 1);
  if (rc == 0) rc = fh_model_create(out, mc, c, h, w, C, max_batch);
  if (rc != 0) fh_error_prefix("pretrained model (pm.arch = '%s', pm.hidden = '%s'): ", arch, hidden);
  fh_config_free(mc);
  return rc;
}

/* ---- checkpoint -------------------------------------------------------------------- */

typedef struct {
  fh_model *m;
  float *momentum;        /* [np] */
  long long steps;        /* optimiser steps taken */
  int epoch;              /* epochs done */
} pt_state;

static int write_ckpt(const char *path, const pt_state *st) {
  char tmp[4400];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the pretraining checkpoint; check pm.path", tmp);
  const hsize_t np = fh_model_nparams(st->m), nb = fh_model_nbuffers(st->m);
  int rc = fh_h5_write(f, "params", H5T_NATIVE_FLOAT, 1, &np, fh_model_params(st->m));
  if (rc == 0) rc = fh_h5_write(f, "momentum", H5T_NATIVE_FLOAT, 1, &np, st->momentum);
  if (rc == 0 && nb) rc = fh_h5_write(f, "buffers", H5T_NATIVE_FLOAT, 1, &nb, fh_model_buffers(st->m));
  if (rc == 0) rc = fh_h5_attr_int(f, "epoch", st->epoch);
  if (rc == 0) rc = fh_h5_attr_int(f, "steps", st->steps);
  if (rc == 0) rc = fh_h5_attr_str(f, "arch", fh_model_arch(st->m));
  if (H5Fclose(f) < 0 && rc == 0) rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write", tmp);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  return rc;
}

static int read_vec(hid_t f, const char *path, const char *name, float *out, size_t n) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) return FH_FAIL(FH_ERR_DATA, "%s: no dataset /%s; not a pretraining checkpoint", path, name);
  hid_t sp = H5Dget_space(d);
  hssize_t cnt = H5Sget_simple_extent_npoints(sp);
  int rc = 0;
  if (cnt != (hssize_t)n)
    rc = FH_FAIL(FH_ERR_DATA, "%s: /%s has %lld values, this deck's PM %zu; resume with the deck that wrote it",
                 path, name, (long long)cnt, n);
  else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    rc = FH_FAIL(FH_ERR_DATA, "%s: cannot read /%s", path, name);
  H5Sclose(sp);
  H5Dclose(d);
  return rc;
}

static int read_attr_ll(hid_t f, const char *path, const char *name, long long *v) {
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0) return FH_FAIL(FH_ERR_DATA, "%s: no attribute %s; not a pretraining checkpoint", path, name);
  int rc = H5Aread(a, H5T_NATIVE_LLONG, v) < 0 ? FH_FAIL(FH_ERR_DATA, "%s: cannot read %s", path, name) : 0;
  H5Aclose(a);
  return rc;
}

/* Rank 0 reads the checkpoint; every rank gets it. */
static int read_ckpt(const char *path, pt_state *st, MPI_Comm comm, int rank) {
  const size_t np = fh_model_nparams(st->m), nb = fh_model_nbuffers(st->m);
  long long ep = 0, steps = 0;
  int rc = 0;
  if (rank == 0) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
      rc = FH_FAIL(FH_ERR_USAGE, "%s: no pretraining checkpoint to resume from (pretrain.checkpoint_every writes "
                                 "one); run without --resume", path);
    } else {
      rc = read_vec(f, path, "params", fh_model_params(st->m), np);
      if (rc == 0) rc = read_vec(f, path, "momentum", st->momentum, np);
      if (rc == 0 && nb) rc = read_vec(f, path, "buffers", fh_model_buffers(st->m), nb);
      if (rc == 0) rc = read_attr_ll(f, path, "epoch", &ep);
      if (rc == 0) rc = read_attr_ll(f, path, "steps", &steps);
      H5Fclose(f);
    }
  }
  FH_TRY(fh_error_agree(comm, rc));
  MPI_Bcast(fh_model_params(st->m), (int)np, MPI_FLOAT, 0, comm);
  MPI_Bcast(st->momentum, (int)np, MPI_FLOAT, 0, comm);
  if (nb) MPI_Bcast(fh_model_buffers(st->m), (int)nb, MPI_FLOAT, 0, comm);
  MPI_Bcast(&ep, 1, MPI_LONG_LONG, 0, comm);
  MPI_Bcast(&steps, 1, MPI_LONG_LONG, 0, comm);
  st->epoch = (int)ep;
  st->steps = steps;
  return 0;
}

/* ---- training ------------------------------------------------------------------------ */

static void format_eta(double s, char *buf, size_t len) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* Accuracy of the model on this rank's block of the global test set, summed
 * over ranks (exact: integer counts). *n = 0 where the data set has none. */
static double test_accuracy(fh_model *m, const fh_split *gt, MPI_Comm comm, long long *n) {
  long long c[2] = {gt->n > 0 ? fh_model_evaluate(m, gt->x, gt->y, gt->n, NULL) : 0, gt->n};
  MPI_Allreduce(MPI_IN_PLACE, c, 2, MPI_LONG_LONG, MPI_SUM, comm);
  *n = c[1];
  return c[1] > 0 ? (double)c[0] / (double)c[1] : NAN;
}

int fh_pretrain(const fh_config *cfg, MPI_Comm comm, int resume) {
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  const uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  const int E = (int)fh_cfg_int(cfg, "pretrain.epochs"), b = (int)fh_cfg_int(cfg, "pretrain.batch");
  char path[4096], ckpt[4200];
  fh_pm_path(cfg, path, sizeof path);
  snprintf(ckpt, sizeof ckpt, "%s.ckpt.h5", path);

  /* shape, classes and the global test set (no clients), then the server's shards */
  fh_dataset *ds = NULL;
  fh_server_shards sh;
  memset(&sh, 0, sizeof sh);
  int rc = fh_dataset_load(&ds, cfg, 0, 0, rank, nranks);
  if (rc == 0) rc = fh_server_shards_load(&sh, cfg, rank, nranks);
  fh_model *m = NULL;
  const int evb = (int)fh_cfg_int(cfg, "run.eval_batch");
  if (rc == 0) rc = fh_pm_create(&m, cfg, ds->c, ds->h, ds->w, ds->num_classes, b > evb ? b : evb);
  rc = fh_error_agree(comm, rc);
  if (rc) {
    fh_server_shards_free(&sh);
    fh_dataset_free(ds);
    fh_model_free(m);
    return rc;
  }
  const size_t np = fh_model_nparams(m), nb = fh_model_nbuffers(m), len = np + nb + 3;
  fh_rng init;
  fh_rng_init(&init, seed, FH_RNG_INIT, FH_RNG_NONE, 1); /* the run's theta^0 is (.., NONE, NONE) */
  fh_model_init(m, &init);
  pt_state st = {.m = m, .momentum = fh_calloc(np, sizeof(float))};
  if (resume) rc = read_ckpt(ckpt, &st, comm, rank);

  fh_sgd opt = {.lr = (float)fh_cfg_real(cfg, "pretrain.lr"),
                .momentum = (float)fh_cfg_real(cfg, "pretrain.momentum"),
                .weight_decay = (float)fh_cfg_real(cfg, "pretrain.weight_decay")};
  const float lr0 = opt.lr;
  const int cosine = strcmp(fh_cfg_str(cfg, "pretrain.schedule"), "cosine") == 0;
  const int ck_every = (int)fh_cfg_int(cfg, "pretrain.checkpoint_every");
  const int nlocal_shards = sh.s1 - sh.s0;
  const int steps_per_epoch = (sh.max_rows + b - 1) / b;

  /* [B * grads | buffers | B * loss | B | 1] per shard minibatch, one sum per step */
  fh_accum acc;
  fh_accum_create(&acc, len, (int)fh_cfg_int(cfg, "run.accum_bits"), sh.nshards);
  float *vec = fh_malloc(len * sizeof(float));
  float *buf0 = fh_malloc((nb ? nb : 1) * sizeof(float));
  float *xb = fh_malloc((size_t)b * ds->dim * sizeof(float));
  int32_t *yb = fh_malloc((size_t)b * sizeof(int32_t));
  int **perm = fh_calloc((size_t)(nlocal_shards ? nlocal_shards : 1), sizeof(int *));
  for (int j = sh.s0; j < sh.s1; j++) {
    int rb, re;
    fh_server_shard_rows(&sh, j, &rb, &re);
    perm[j - sh.s0] = fh_malloc((size_t)(re - rb ? re - rb : 1) * sizeof(int));
  }

  char summary[512];
  fh_model_summary(m, summary, sizeof summary);
  fh_info("pretrain: %s", summary);
  fh_info("pretrain: %lld server rows of %s (data.server_fraction = %g) in %d shards over %d ranks; %d epochs of %d "
          "steps, batch %d x %d; writes %s",
          (long long)sh.total, ds->name, fh_cfg_real(cfg, "data.server_fraction"), sh.nshards, nranks, E,
          steps_per_epoch, sh.nshards, b, path);
  if (resume && rc == 0) fh_info("pretrain: resumed from %s after epoch %d of %d", ckpt, st.epoch, E);

  double t0 = MPI_Wtime();
  const int e_start = st.epoch;
  int stop_sig = 0;
  long long ntest = 0;
  double acc_test = NAN;
  for (int e = st.epoch; e < E && rc == 0; e++) {
    double te = MPI_Wtime();
    opt.lr = cosine ? (float)(lr0 * 0.5 * (1.0 + cos(M_PI * e / E))) : lr0;
    for (int j = sh.s0; j < sh.s1; j++) {
      int rb, re;
      fh_server_shard_rows(&sh, j, &rb, &re);
      fh_rng r;
      fh_rng_init(&r, seed, FH_RNG_SERVER, (uint32_t)j, (uint32_t)e);
      fh_rng_permutation(&r, perm[j - sh.s0], re - rb);
    }
    double loss_sum = 0, rows_sum = 0;
    for (int s = 0; s < steps_per_epoch && rc == 0; s++) {
      fh_accum_zero(&acc);
      if (nb) memcpy(buf0, fh_model_buffers(m), nb * sizeof(float));
      for (int j = sh.s0; j < sh.s1 && rc == 0; j++) {
        int rb, re;
        fh_server_shard_rows(&sh, j, &rb, &re);
        const int lo = s * b, hi = lo + b < re - rb ? lo + b : re - rb;
        if (hi <= lo) continue;
        const int B = hi - lo;
        for (int i = 0; i < B; i++) {
          const int row = rb + perm[j - sh.s0][lo + i];
          memcpy(xb + (size_t)i * ds->dim, sh.rows.x + (size_t)row * ds->dim, (size_t)ds->dim * sizeof(float));
          yb[i] = sh.rows.y[row];
        }
        if (nb) memcpy(fh_model_buffers(m), buf0, nb * sizeof(float)); /* every shard from the step's start */
        const float loss = fh_model_loss_grad(m, xb, yb, B);
        if (!isfinite(loss)) {
          rc = FH_FAIL(FH_ERR_DIVERGED, "pretraining loss became %s in epoch %d; lower pretrain.lr (now %g)",
                       isnan(loss) ? "NaN" : "infinite", e + 1, (double)opt.lr);
          break;
        }
        const float *g = fh_model_grads(m);
        for (size_t i = 0; i < np; i++) vec[i] = (float)B * g[i];
        if (nb) memcpy(vec + np, fh_model_buffers(m), nb * sizeof(float));
        vec[np + nb] = (float)B * loss;
        vec[np + nb + 1] = (float)B;
        vec[np + nb + 2] = 1.0f;
        rc = fh_accum_add(&acc, vec, 1.0);
      }
      rc = fh_error_agree(comm, rc);
      if (rc) break;
      fh_accum_allreduce(&acc, comm); /* the step's one reduction */
      const double rows = (double)acc.sum[np + nb + 1] / acc.scale, mbs = (double)acc.sum[np + nb + 2] / acc.scale;
      float *g = fh_model_grads(m);
      for (size_t i = 0; i < np; i++) g[i] = (float)((double)acc.sum[i] / acc.scale / rows);
      float *bf = fh_model_buffers(m);
      for (size_t i = 0; i < nb; i++) bf[i] = (float)((double)acc.sum[np + i] / acc.scale / mbs);
      fh_sgd_step(&opt, fh_model_params(m), g, st.momentum, np, &st.steps);
      loss_sum += (double)acc.sum[np + nb] / acc.scale;
      rows_sum += rows;
    }
    if (rc) break;
    st.epoch = e + 1;
    acc_test = test_accuracy(m, &ds->global_test, comm, &ntest);
    char eta[32], tacc[48];
    const double el = MPI_Wtime() - t0;
    format_eta(el / (e + 1 - e_start) * (E - e - 1), eta, sizeof eta);
    if (ntest > 0) snprintf(tacc, sizeof tacc, "test acc %6.2f%%", 100 * acc_test);
    else snprintf(tacc, sizeof tacc, "test acc      -");
    fh_info("pretrain epoch %*d/%d  loss %.4f  %s  lr %.4g  %.2f s  ETA %s", (int)snprintf(NULL, 0, "%d", E), e + 1,
            E, loss_sum / rows_sum, tacc, (double)opt.lr, MPI_Wtime() - te, eta);
    stop_sig = e + 1 < E ? fh_signals_agree(comm) : 0;
    if (stop_sig || (ck_every > 0 && (e + 1) % ck_every == 0)) {
      if (rank == 0) rc = write_ckpt(ckpt, &st);
      rc = fh_error_agree(comm, rc);
    }
    if (stop_sig) break;
  }

  if (rc == 0 && !stop_sig) {
    if (rank == 0) {
      char *ini = fh_config_dump(cfg);
      int shape[3] = {ds->c, ds->h, ds->w};
      rc = fh_model_save_state(path, m, fh_model_params(m), nb ? fh_model_buffers(m) : NULL, shape, ini);
      free(ini);
    }
    rc = fh_error_agree(comm, rc);
    if (rc == 0) {
      if (ntest > 0)
        fh_info("pretrain: wrote %s; accuracy %.2f%% on the %lld rows of the global test set", path, 100 * acc_test,
                ntest);
      else
        fh_info("pretrain: wrote %s", path);
    }
  } else if (rc == 0 && stop_sig) {
    fh_info("pretrain: stopped by %s after epoch %d of %d; checkpoint %s; resume with --resume (exit code %d)",
            fh_signal_name(stop_sig), st.epoch, E, ckpt, FH_EXIT_REQUEUE);
    MPI_Barrier(comm);
    rc = FH_EXIT_REQUEUE;
  }

  for (int j = 0; j < nlocal_shards; j++) free(perm[j]);
  free(perm);
  free(xb);
  free(yb);
  free(vec);
  free(buf0);
  free(st.momentum);
  fh_accum_destroy(&acc);
  fh_model_free(m);
  fh_server_shards_free(&sh);
  fh_dataset_free(ds);
  return rc;
}
