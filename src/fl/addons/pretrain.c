/* fedhpc pretrain: the server's pretrained model, trained data-parallel on the
 * server's rows (see pretrain.h for the scheme and why it is rank-count
 * invariant). */
#include "fl/addons/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/rng.h"
#include "core/signals.h"
#include "data/dataset.h"
#include "fl/accumulate.h"
#include "fl/addons/pretrain_ckpt.h"
#include "fl/blocks/server_shards.h"
#include "io/model_file.h"
#include "nn/optim.h"

const fh_key_spec fh_pretrain_keys[] = {
    {"pm.arch", FH_T_STRING, "", 0, 0, NULL,
     "architecture of the server's pretrained model (a model.arch value); empty = model.arch"},
    {"pm.hidden", FH_T_STRING, "", 0, 0, NULL,
     "mlp: hidden widths of the pretrained model, e.g. 512,512 ('none': softmax regression); empty = "
     "model.hidden"},
    {"pm.outputs", FH_T_INT, "0", 0, 1000000, NULL,
     "logits of the pretrained model; 0 = the meta-model's (model.outputs). The AugFL authors' PMs have the "
     "data set's classes while their meta-models have 100; other than the meta-model's only with "
     "augfl.kd_weight = 0 and the linearised step (R then reads the PM's features, not its logits)"},
    {"pm.path", FH_T_STRING, "", 0, 0, NULL,
     "the pretrained model's file: fedhpc pretrain writes it, AugFL reads it; empty = "
     "output.dir/<deck name>.pm.h5"},
    {"pretrain.epochs", FH_T_INT, "30", 1, 1e6, NULL, "passes over the server's rows"},
    {"pretrain.batch", FH_T_INT, "16", 1, 1 << 20, NULL,
     "rows each server shard contributes to a step (a step's batch: data.server_shards times this)"},
    {"pretrain.chunk", FH_T_INT, "256", 1, 1 << 20, NULL,
     "rows per product: consecutive shards are grouped so that a group's minibatches (group x pretrain.batch "
     "rows) reach this many, computed as one batch (BatchNorm statistics over the group); ranks share the work "
     "by whole groups; 1 = each shard's minibatch alone"},
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

int fh_pm_outputs(const fh_config *cfg, int classes, int *outputs) {
  FH_TRY(fh_model_outputs(cfg, classes, outputs));
  const long long o = fh_cfg_int(cfg, "pm.outputs");
  if (o == 0) return 0;
  if (o < classes)
    return FH_FAIL(FH_ERR_CONFIG, "pm.outputs = %lld is fewer than the data set's %d classes; set it to 0 (the "
                                  "meta-model's outputs) or to at least %d", o, classes, classes);
  *outputs = (int)o;
  return 0;
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

/* Accuracy of the model on this rank's block of the global test set, summed
 * over ranks (exact: integer counts). *n = 0 where the data set has none. */
static double test_accuracy(fh_model *m, const fh_split *gt, MPI_Comm comm, long long *n) {
  long long c[2] = {gt->n > 0 ? fh_model_evaluate(m, gt->x, gt->y, gt->n, NULL) : 0, gt->n};
  MPI_Allreduce(MPI_IN_PLACE, c, 2, MPI_LONG_LONG, MPI_SUM, comm);
  *n = c[1];
  return c[1] > 0 ? (double)c[0] / (double)c[1] : NAN;
}

/* CPU seconds of this process: on a shared machine the rate per CPU second is
 * the one to hold against the sgemm rate. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the command, in named steps ------------------------------------------------------- */

/* What the steps of one pretraining share. */
typedef struct {
  const fh_config *cfg;
  MPI_Comm comm;
  int rank, nranks, E, b;
  int G; /* shards per group: a group's minibatches are one product */
  uint64_t seed;
  fh_dataset *ds;
  fh_server_shards sh;
  size_t np, nb, len;
  fh_pretrain_state st; /* the model, its momentum, steps and epochs done */
  fh_sgd opt;
  float lr0;
  int cosine, ck_every, steps_per_epoch;
  /* [B * grads | buffers | B * loss | B | 1] per shard minibatch, one sum per step */
  fh_accum acc;
  float *vec, *buf0, *xb;
  int32_t *yb;
  int **perm; /* [local shards] this epoch's order of each shard's rows */
} pretrainer;

/* Shape, classes and the global test set (no clients), the server's shards
 * and the PM; collective, errors agreed (nothing is left allocated then). */
static int pt_open(pretrainer *P, const fh_config *cfg, MPI_Comm comm) {
  memset(P, 0, sizeof *P);
  P->cfg = cfg;
  P->comm = comm;
  MPI_Comm_rank(comm, &P->rank);
  MPI_Comm_size(comm, &P->nranks);
  P->seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  P->E = (int)fh_cfg_int(cfg, "pretrain.epochs");
  P->b = (int)fh_cfg_int(cfg, "pretrain.batch");
  P->G = fh_server_group_for((int)fh_cfg_int(cfg, "data.server_shards"), P->b, (int)fh_cfg_int(cfg, "pretrain.chunk"));
  int rc = fh_dataset_load(&P->ds, cfg, 0, 0, P->rank, P->nranks);
  if (rc == 0) rc = fh_server_shards_load_grouped(&P->sh, cfg, P->rank, P->nranks, P->G);
  const int evb = (int)fh_cfg_int(cfg, "run.eval_batch"), gb = P->G * P->b;
  fh_model *m = NULL;
  int outputs = 0; /* pm.outputs, by default the meta-model's (model.outputs) */
  if (rc == 0) rc = fh_pm_outputs(cfg, P->ds->num_classes, &outputs);
  if (rc == 0) rc = fh_pm_create(&m, cfg, P->ds->c, P->ds->h, P->ds->w, outputs, gb > evb ? gb : evb);
  rc = fh_error_agree(comm, rc);
  if (rc) {
    fh_server_shards_free(&P->sh);
    fh_dataset_free(P->ds);
    fh_model_free(m);
    return rc;
  }
  P->st.m = m;
  return 0;
}

/* theta^0, the optimiser and the scratch of the steps. */
static void pt_prepare(pretrainer *P) {
  const fh_config *cfg = P->cfg;
  fh_model *m = P->st.m;
  P->np = fh_model_nparams(m), P->nb = fh_model_nbuffers(m), P->len = P->np + P->nb + 3;
  fh_rng init;
  fh_rng_init(&init, P->seed, FH_RNG_INIT, FH_RNG_NONE, 1); /* the run's theta^0 is (.., NONE, NONE) */
  fh_model_init(m, &init);
  P->st.momentum = fh_calloc(P->np, sizeof(float));
  P->opt = (fh_sgd){.lr = (float)fh_cfg_real(cfg, "pretrain.lr"),
                    .momentum = (float)fh_cfg_real(cfg, "pretrain.momentum"),
                    .weight_decay = (float)fh_cfg_real(cfg, "pretrain.weight_decay")};
  P->lr0 = P->opt.lr;
  P->cosine = fh_cfg_enum(cfg, "pretrain.schedule") == 1; /* constant|cosine */
  P->ck_every = (int)fh_cfg_int(cfg, "pretrain.checkpoint_every");
  P->steps_per_epoch = (P->sh.max_rows + P->b - 1) / P->b;
  const int nlocal_shards = P->sh.s1 - P->sh.s0;
  fh_accum_create(&P->acc, P->len, (int)fh_cfg_int(cfg, "run.accum_bits"), P->sh.nshards);
  fh_accum_share(&P->acc, P->comm); /* every step's allreduce in place on one node */
  P->vec = fh_malloc(P->len * sizeof(float));
  P->buf0 = fh_malloc((P->nb ? P->nb : 1) * sizeof(float));
  P->xb = fh_malloc((size_t)P->G * P->b * P->ds->dim * sizeof(float));
  P->yb = fh_malloc((size_t)P->G * P->b * sizeof(int32_t));
  P->perm = fh_calloc((size_t)(nlocal_shards ? nlocal_shards : 1), sizeof(int *));
  for (int j = P->sh.s0; j < P->sh.s1; j++) {
    int rb, re;
    fh_server_shard_rows(&P->sh, j, &rb, &re);
    P->perm[j - P->sh.s0] = fh_malloc((size_t)(re - rb ? re - rb : 1) * sizeof(int));
  }
}

static void pt_close(pretrainer *P) {
  for (int j = 0; j < P->sh.s1 - P->sh.s0; j++) free(P->perm[j]);
  free(P->perm);
  free(P->xb);
  free(P->yb);
  free(P->vec);
  free(P->buf0);
  free(P->st.momentum);
  fh_accum_destroy(&P->acc);
  fh_model_free(P->st.m);
  fh_server_shards_free(&P->sh);
  fh_dataset_free(P->ds);
}

/* Epoch e's order of each local shard's rows, from (seed, FH_RNG_SERVER, shard, e). */
static void pt_shuffle(pretrainer *P, int e) {
  for (int j = P->sh.s0; j < P->sh.s1; j++) {
    int rb, re;
    fh_server_shard_rows(&P->sh, j, &rb, &re);
    fh_rng r;
    fh_rng_init(&r, P->seed, FH_RNG_SERVER, (uint32_t)j, (uint32_t)e);
    fh_rng_permutation(&r, P->perm[j - P->sh.s0], re - rb);
  }
}

/* Group g's minibatch of step s into the sum: the rows [s b, s b + b) of
 * each of its shards' orders (none past a shard's end), in shard order, as
 * one batch; its gradient times its rows, its BatchNorm statistics from the
 * step's start, its loss and counts. The group never depends on the rank
 * count, so neither does its product. Rank-local. */
static int pt_group_minibatch(pretrainer *P, int grp, int s, int e) {
  fh_model *m = P->st.m;
  const size_t np = P->np, nb = P->nb;
  const int dim = P->ds->dim;
  int j0, j1, B = 0;
  fh_server_group_shards(&P->sh, grp, &j0, &j1);
  for (int j = j0; j < j1; j++) {
    int rb, re;
    fh_server_shard_rows(&P->sh, j, &rb, &re);
    const int lo = s * P->b, hi = lo + P->b < re - rb ? lo + P->b : re - rb;
    for (int i = lo; i < hi; i++, B++) {
      const int row = rb + P->perm[j - P->sh.s0][i];
      memcpy(P->xb + (size_t)B * dim, P->sh.rows.x + (size_t)row * dim, (size_t)dim * sizeof(float));
      P->yb[B] = P->sh.rows.y[row];
    }
  }
  if (B == 0) return 0;
  if (nb) memcpy(fh_model_buffers(m), P->buf0, nb * sizeof(float)); /* every shard from the step's start */
  const float loss = fh_model_loss_grad(m, P->xb, P->yb, B);
  if (!isfinite(loss))
    return FH_FAIL(FH_ERR_DIVERGED, "pretraining loss became %s in epoch %d; lower pretrain.lr (now %g)",
                   isnan(loss) ? "NaN" : "infinite", e + 1, (double)P->opt.lr);
  const float *g = fh_model_grads(m);
  for (size_t i = 0; i < np; i++) P->vec[i] = (float)B * g[i];
  if (nb) memcpy(P->vec + np, fh_model_buffers(m), nb * sizeof(float));
  P->vec[np + nb] = (float)B * loss;
  P->vec[np + nb + 1] = (float)B;
  P->vec[np + nb + 2] = 1.0f;
  return fh_accum_add(&P->acc, P->vec, 1.0);
}

/* Step s of epoch e: every group's minibatch, the one reduction, the same SGD
 * step on every rank. Collective, errors agreed. */
static int pt_step(pretrainer *P, int s, int e, double *loss_sum, double *rows_sum) {
  fh_model *m = P->st.m;
  const size_t np = P->np, nb = P->nb;
  int rc = 0;
  fh_accum_zero(&P->acc);
  if (nb) memcpy(P->buf0, fh_model_buffers(m), nb * sizeof(float));
  for (int g = P->sh.g0; g < P->sh.g1 && rc == 0; g++) rc = pt_group_minibatch(P, g, s, e);
  FH_TRY(fh_error_agree(P->comm, rc));
  fh_accum_allreduce(&P->acc, P->comm); /* the step's one reduction */
  const fh_accum *acc = &P->acc;
  const double rows = (double)acc->sum[np + nb + 1] / acc->scale, mbs = (double)acc->sum[np + nb + 2] / acc->scale;
  float *g = fh_model_grads(m);
  for (size_t i = 0; i < np; i++) g[i] = (float)((double)acc->sum[i] / acc->scale / rows);
  float *bf = fh_model_buffers(m);
  for (size_t i = 0; i < nb; i++) bf[i] = (float)((double)acc->sum[np + i] / acc->scale / mbs);
  fh_sgd_step(&P->opt, fh_model_params(m), g, P->st.momentum, np, &P->st.steps);
  *loss_sum += (double)acc->sum[np + nb] / acc->scale;
  *rows_sum += rows;
  return 0;
}

/* Epoch e: its learning rate, its order, its steps. *loss gets the mean
 * training loss. Collective, errors agreed. */
static int pt_epoch(pretrainer *P, int e, double *loss) {
  P->opt.lr = P->cosine ? (float)(P->lr0 * 0.5 * (1.0 + cos(M_PI * e / P->E))) : P->lr0;
  pt_shuffle(P, e);
  double loss_sum = 0, rows_sum = 0;
  for (int s = 0; s < P->steps_per_epoch; s++) FH_TRY(pt_step(P, s, e, &loss_sum, &rows_sum));
  *loss = loss_sum / rows_sum;
  P->st.epoch = e + 1;
  return 0;
}

/* The end: the PM's file (a complete run), or the line saying how to resume
 * (a signal stopped it after a checkpoint: FH_EXIT_REQUEUE). */
static int pt_finish(pretrainer *P, int stop_sig, const char *path, const char *ckpt, long long ntest,
                     double acc_test) {
  int rc = 0;
  if (!stop_sig) {
    if (P->rank == 0) {
      fh_model *m = P->st.m;
      char *ini = fh_config_dump(P->cfg);
      int shape[3] = {P->ds->c, P->ds->h, P->ds->w};
      rc = fh_model_save_state(path, m, fh_model_params(m), P->nb ? fh_model_buffers(m) : NULL, shape, ini);
      free(ini);
    }
    rc = fh_error_agree(P->comm, rc);
    if (rc == 0) {
      if (ntest > 0)
        fh_info("pretrain: wrote %s; accuracy %.2f%% on the %lld rows of the global test set", path, 100 * acc_test,
                ntest);
      else
        fh_info("pretrain: wrote %s", path);
    }
    return rc;
  }
  fh_info("pretrain: stopped by %s after epoch %d of %d; checkpoint %s; resume with --resume (exit code %d)",
          fh_signal_name(stop_sig), P->st.epoch, P->E, ckpt, FH_EXIT_REQUEUE);
  MPI_Barrier(P->comm);
  return FH_EXIT_REQUEUE;
}

int fh_pretrain(const fh_config *cfg, MPI_Comm comm, int resume) {
  char path[4096], ckpt[4200];
  fh_pm_path(cfg, path, sizeof path);
  snprintf(ckpt, sizeof ckpt, "%s.ckpt.h5", path);
  pretrainer P;
  FH_TRY(pt_open(&P, cfg, comm));
  pt_prepare(&P);
  int rc = resume ? fh_pretrain_ckpt_read(ckpt, &P.st, comm, P.rank) : 0;
  const int E = P.E;

  char summary[512];
  fh_model_summary(P.st.m, summary, sizeof summary);
  fh_info("pretrain: %s", summary);
  fh_info("pretrain: %lld server rows of %s (data.server_fraction = %g) in %d shards over %d ranks, in groups of %d "
          "(products of %d rows, pretrain.chunk); %d epochs of %d steps, batch %d x %d; writes %s",
          (long long)P.sh.total, P.ds->name, fh_cfg_real(cfg, "data.server_fraction"), P.sh.nshards, P.nranks, P.G,
          P.G * P.b, E, P.steps_per_epoch, P.sh.nshards, P.b, path);
  if (resume && rc == 0) fh_info("pretrain: resumed from %s after epoch %d of %d", ckpt, P.st.epoch, E);

  double t0 = MPI_Wtime();
  const int e_start = P.st.epoch;
  int stop_sig = 0;
  long long ntest = 0;
  double acc_test = NAN;
  for (int e = P.st.epoch; e < E && rc == 0; e++) {
    double te = MPI_Wtime(), ce = cpu_seconds(), loss = 0;
    rc = pt_epoch(&P, e, &loss);
    if (rc) break;
    /* the training's rate: a step's FLOPs per row, times the rows (every rank ran its share) */
    const double t_train = MPI_Wtime() - te, c_train = cpu_seconds() - ce,
                 gflop = (fh_model_flops_forward(P.st.m, 1) + fh_model_flops_backward(P.st.m, 1)) *
                         (double)P.sh.total * 1e-9;
    acc_test = test_accuracy(P.st.m, &P.ds->global_test, comm, &ntest);
    char eta[32], tacc[48];
    const double el = MPI_Wtime() - t0;
    fh_format_eta(el / (e + 1 - e_start) * (E - e - 1), eta, sizeof eta);
    if (ntest > 0) snprintf(tacc, sizeof tacc, "test acc %6.2f%%", 100 * acc_test);
    else snprintf(tacc, sizeof tacc, "test acc      -");
    fh_info("pretrain epoch %*d/%d  loss %.4f  %s  lr %.4g  %.2f s (training %.2f s, %.1f GFLOP/s; rank 0: %.2f "
            "CPU s)  ETA %s", (int)snprintf(NULL, 0, "%d", E), e + 1, E, loss, tacc, (double)P.opt.lr,
            MPI_Wtime() - te, t_train, gflop / t_train, c_train, eta);
    stop_sig = e + 1 < E ? fh_signals_agree(comm) : 0;
    if (stop_sig || (P.ck_every > 0 && (e + 1) % P.ck_every == 0)) {
      if (P.rank == 0) rc = fh_pretrain_ckpt_write(ckpt, &P.st);
      rc = fh_error_agree(comm, rc);
    }
    if (stop_sig) break;
  }
  if (rc == 0) rc = pt_finish(&P, stop_sig, path, ckpt, ntest, acc_test);
  pt_close(&P);
  return rc;
}

const fh_addon fh_addon_pretrain = {
    .name = "pretrain",
    .summary = "the server's pretrained model: `fedhpc pretrain` trains it, AugFL reads it (pm.*, pretrain.*)",
    .keys = fh_pretrain_keys,
};
