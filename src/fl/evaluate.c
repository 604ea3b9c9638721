/* Evaluation modes of a run (see evaluate.h for what each one measures and
 * why the results do not depend on the rank count). */
#include "fl/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "fl/addon.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/loss.h"

const fh_key_spec fh_eval_keys[] = {
    {"eval.global_test", FH_T_BOOL, "true", 0, 0, NULL,
     "evaluate the global model on the data set's global test set (where it has one)"},
    {"eval.finetune_steps", FH_T_INT, "0", 0, 1e8, NULL,
     "fine-tune evaluation: each client takes this many SGD steps (train.batch_size) from the "
     "global model on its train split, then tests; 0 = off"},
    {"eval.finetune_epochs", FH_T_INT, "0", 0, 1e6, NULL,
     "fine-tune evaluation by epochs of local SGD (train.* settings) instead of steps; 0 = off"},
    {"eval.finetune_lr", FH_T_REAL, "0", 0, 1e6, NULL, "fine-tuning learning rate; 0 = train.lr"},
    {"eval.holdout_clients", FH_T_REAL, "0", 0, 1e8, NULL,
     "clients held out of training and evaluated by adapting the global model: a fraction of "
     "run.clients (below 1) or a count"},
    {"eval.adapt_steps", FH_T_INT, "1", 0, 1e8, NULL, "SGD steps a held-out client adapts with"},
    {"eval.adapt_lr", FH_T_REAL, "0", 0, 1e6, NULL, "learning rate of the adaptation; 0 = train.lr"},
    {"eval.adapt_batch", FH_T_INT, "0", 0, 1 << 20, NULL,
     "minibatch of an adaptation step; 0 = the client's whole train split"},
    {"eval.target_bn", FH_T_ENUM, "train", 0, 0, "train|eval",
     "BatchNorm when a held-out client scores its adapted model on its test split: the batch statistics of "
     "that split (train, as AugFL's authors score their targets) or the running statistics (eval)"},
    FH_KEYS_END};

/* ---- configuration ------------------------------------------------------------ */

int fh_holdout_draw(const fh_config *cfg, uint64_t seed, int num_clients, int **ids, int *n) {
  *ids = NULL;
  *n = 0;
  double v = fh_cfg_real(cfg, "eval.holdout_clients");
  if (v == 0) return 0;
  long long h;
  if (v < 1) {
    h = llround(v * num_clients);
  } else {
    if (v != floor(v))
      return FH_FAIL(FH_ERR_CONFIG, "eval.holdout_clients = %g: give a fraction of run.clients below 1 "
                                    "or a whole number of clients", v);
    h = (long long)v;
  }
  if (h >= num_clients)
    return FH_FAIL(FH_ERR_CONFIG, "eval.holdout_clients = %g holds out %lld of %d clients and leaves none "
                                  "to train; lower it or raise run.clients", v, h, num_clients);
  if (h == 0) return 0;
  /* not a round's stream: rounds are 0 .. R-1, never FH_RNG_NONE */
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_SAMPLING, FH_RNG_NONE, FH_RNG_NONE);
  *ids = fh_malloc((size_t)h * sizeof(int));
  fh_rng_sample_sorted(&r, num_clients, (int)h, *ids);
  *n = (int)h;
  return 0;
}

int fh_eval_check(const fh_config *cfg, const fh_algorithm *alg, int nholdout) {
  long long steps = fh_cfg_int(cfg, "eval.finetune_steps"), epochs = fh_cfg_int(cfg, "eval.finetune_epochs");
  if (steps > 0 && epochs > 0)
    return FH_FAIL(FH_ERR_CONFIG, "eval.finetune_steps = %lld and eval.finetune_epochs = %lld: fine-tune "
                                  "by steps or by epochs, set the other to 0", steps, epochs);
  if (alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL)) {
    if (steps > 0 || epochs > 0)
      return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = %s trains no global model to fine-tune; "
                                    "set eval.finetune_steps and eval.finetune_epochs to 0", alg->name);
    if (nholdout > 0)
      return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = %s trains no global model for held-out clients "
                                    "to adapt; set eval.holdout_clients = 0", alg->name);
  }
  return 0;
}

/* ---- the evaluator ------------------------------------------------------------ */

/* Per-client rows of the reduced table, [K] doubles each: correct, count and
 * summed loss on the test split for each mode, plus the global model's
 * summed loss and count on the train split. */
enum { COL_CORRECT, COL_COUNT, COL_LOSS, NCOL };
enum { MODE_GLOBAL, MODE_PERSONAL, MODE_FINETUNE, MODE_HOLDOUT, NMODES };

struct fh_evaluator {
  int K, evb, dim, C;
  int on[NMODES];     /* mode made in this run                         */
  int row[NMODES];    /* its first row in table                        */
  int row_train;      /* train loss and count of the global model      */
  int nrows;
  double *table;      /* [nrows, K]                                     */
  double *acc;        /* [K] rank 0: accuracies for the distribution    */
  fh_local_sgd sgd;   /* adaptation and fine-tuning scratch             */
  int ft_steps, ft_epochs, ft_batch, adapt_steps, adapt_batch;
  float ft_lr, adapt_lr;
  int target_train;   /* held-out clients score in training mode        */
  /* global test set */
  int global_test;
  long long gt_offset, gt_total; /* this rank's block in the whole set   */
  float *gt_batch;               /* [evb, dim] padded chunk            */
};

int fh_evaluator_create(fh_evaluator **out, fh_run *run) {
  const fh_config *cfg = run->cfg;
  fh_evaluator *ev = fh_calloc(1, sizeof *ev);
  *out = ev;
  ev->K = run->map.num_clients;
  ev->evb = (int)fh_cfg_int(cfg, "run.eval_batch");
  ev->dim = run->data->dim;
  ev->C = run->data->num_classes;
  const int has_global = !(run->alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL));
  ev->ft_steps = (int)fh_cfg_int(cfg, "eval.finetune_steps");
  ev->ft_epochs = (int)fh_cfg_int(cfg, "eval.finetune_epochs");
  ev->ft_batch = (int)fh_cfg_int(cfg, "train.batch_size");
  double lr = fh_cfg_real(cfg, "train.lr");
  ev->ft_lr = (float)(fh_cfg_real(cfg, "eval.finetune_lr") > 0 ? fh_cfg_real(cfg, "eval.finetune_lr") : lr);
  ev->adapt_steps = (int)fh_cfg_int(cfg, "eval.adapt_steps");
  ev->adapt_batch = (int)fh_cfg_int(cfg, "eval.adapt_batch");
  ev->adapt_lr = (float)(fh_cfg_real(cfg, "eval.adapt_lr") > 0 ? fh_cfg_real(cfg, "eval.adapt_lr") : lr);
  ev->target_train = fh_cfg_enum(cfg, "eval.target_bn") == 0; /* train|eval */
  ev->on[MODE_GLOBAL] = has_global;
  ev->on[MODE_PERSONAL] = fh_run_has_client_model(run) || run->alg->client_evaluate != NULL;
  ev->on[MODE_FINETUNE] = has_global && (ev->ft_steps > 0 || ev->ft_epochs > 0);
  ev->on[MODE_HOLDOUT] = has_global && run->nholdout > 0;
  for (int i = 0; i < NMODES; i++)
    if (ev->on[i]) ev->row[i] = ev->nrows, ev->nrows += NCOL;
  if (has_global) ev->row_train = ev->nrows, ev->nrows += 2;
  ev->table = fh_malloc((size_t)ev->nrows * ev->K * sizeof(double) + 1);
  if (run->rank == 0) ev->acc = fh_malloc((size_t)ev->K * sizeof(double));
  fh_local_sgd_create(&ev->sgd, cfg, ev->dim, fh_model_nparams(run->model));
  ev->sgd.epochs = ev->ft_epochs;
  ev->sgd.iterations = 0; /* fine-tuning counts eval.finetune_epochs, whatever train.iterations says */
  ev->sgd.opt.lr = ev->ft_lr;

  /* The global test set: blocks over ranks in rank order. */
  long long n = run->data->global_test.n;
  MPI_Exscan(&n, &ev->gt_offset, 1, MPI_LONG_LONG, MPI_SUM, run->comm);
  if (run->rank == 0) ev->gt_offset = 0; /* MPI_Exscan leaves rank 0's undefined */
  MPI_Allreduce(&n, &ev->gt_total, 1, MPI_LONG_LONG, MPI_SUM, run->comm);
  ev->global_test = has_global && fh_cfg_bool(cfg, "eval.global_test") && ev->gt_total > 0;
  if (ev->global_test) ev->gt_batch = fh_malloc((size_t)ev->evb * ev->dim * sizeof(float));
  return 0;
}

void fh_evaluator_free(fh_evaluator *ev) {
  if (!ev) return;
  fh_local_sgd_destroy(&ev->sgd);
  free(ev->table);
  free(ev->acc);
  free(ev->gt_batch);
  free(ev);
}

/* ---- pieces ------------------------------------------------------------------- */

/* Summed loss and correct count of the model over a split, in eval batches. */
static double eval_split(fh_model *m, const fh_split *sp, int dim, int evb, double *loss) {
  double correct = 0;
  for (int s = 0; s < sp->n; s += evb) {
    int B = sp->n - s < evb ? sp->n - s : evb;
    correct += fh_model_evaluate(m, sp->x + (size_t)s * dim, sp->y + s, B, loss);
  }
  return correct;
}

/* The same in training mode: each eval batch normalised by its own
 * statistics (the model's running statistics move; the caller reloads it). */
static double eval_split_train(fh_model *m, const fh_split *sp, int dim, int evb, int C, double *loss) {
  double correct = 0;
  if (evb > fh_model_max_batch(m)) evb = fh_model_max_batch(m);
  float *p = fh_malloc((size_t)evb * C * sizeof(float));
  for (int s = 0; s < sp->n; s += evb) {
    const int B = sp->n - s < evb ? sp->n - s : evb;
    const float *z = fh_model_forward(m, sp->x + (size_t)s * dim, B, 1);
    *loss += fh_softmax_ce_forward(p, z, sp->y + s, B, C) * B;
    for (int b = 0; b < B; b++) {
      int best = 0; /* strict > keeps the lowest index on ties, as fh_model_evaluate */
      for (int j = 1; j < C; j++)
        if (z[(size_t)b * C + j] > z[(size_t)b * C + best]) best = j;
      correct += best == sp->y[s + b];
    }
  }
  free(p);
  return correct;
}

/* The model's test-split result for client k into mode's rows (held-out
 * clients in training mode with eval.target_bn = train). */
static void record_test(fh_evaluator *ev, int mode, fh_model *m, const fh_client_data *cd) {
  double loss = 0;
  double *t = ev->table + (size_t)ev->row[mode] * ev->K;
  t[(size_t)COL_CORRECT * ev->K + cd->id] = mode == MODE_HOLDOUT && ev->target_train
                                                ? eval_split_train(m, &cd->test, ev->dim, ev->evb, ev->C, &loss)
                                                : eval_split(m, &cd->test, ev->dim, ev->evb, &loss);
  t[(size_t)COL_COUNT * ev->K + cd->id] = cd->test.n;
  t[(size_t)COL_LOSS * ev->K + cd->id] = loss;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Rank 0: pooled accuracy and loss and the distribution of the clients' own
 * accuracies (clients with a test split only). */
static void summarise(fh_evaluator *ev, const double *rows, double *accuracy, double *loss,
                      double client_acc[5]) {
  const double *correct = rows + (size_t)COL_CORRECT * ev->K, *count = rows + (size_t)COL_COUNT * ev->K,
               *lsum = rows + (size_t)COL_LOSS * ev->K;
  double tc = 0, tn = 0, tl = 0, mean = 0;
  int nacc = 0;
  for (int k = 0; k < ev->K; k++) {
    tc += correct[k];
    tn += count[k];
    tl += lsum[k];
    if (count[k] > 0) ev->acc[nacc++] = correct[k] / count[k];
  }
  *accuracy = tn > 0 ? tc / tn : NAN;
  *loss = tn > 0 ? tl / tn : NAN;
  for (int i = 0; i < nacc; i++) mean += ev->acc[i];
  qsort(ev->acc, nacc, sizeof(double), cmp_double);
  client_acc[0] = nacc ? mean / nacc : NAN;
  client_acc[1] = nacc ? ev->acc[0] : NAN;
  client_acc[2] = nacc ? ev->acc[nacc - 1] : NAN;
  client_acc[3] = nacc ? fh_percentile_sorted(ev->acc, nacc, 0.10) : NAN;
  client_acc[4] = nacc ? fh_percentile_sorted(ev->acc, nacc, 0.90) : NAN;
}

/* The global model (loaded in run->model) on this rank's block of the global
 * test set. Forward batches are the chunks [c, c + evb) of the whole set, so
 * that every sample is computed in the same batch position and size on any
 * rank count; a chunk split between ranks is padded with zero rows (rows of a
 * batch do not mix in evaluation). Per-sample losses are summed in fixed
 * point. out: correct, count, loss * 2^32, non-finite losses. */
static void eval_global_test(fh_evaluator *ev, fh_run *run, int64_t out[4]) {
  const fh_split *gt = &run->data->global_test;
  const long long off = ev->gt_offset, end = off + gt->n;
  const double scale = 4294967296.0;
  memset(out, 0, 4 * sizeof(int64_t));
  for (long long c = off / ev->evb * ev->evb; c < end; c += ev->evb) {
    int L = (int)(ev->gt_total - c < ev->evb ? ev->gt_total - c : ev->evb);
    long long lo = c > off ? c : off, hi = c + L < end ? c + L : end;
    const float *x;
    if (lo == c && hi == c + L) {
      x = gt->x + (size_t)(c - off) * ev->dim;
    } else {
      memset(ev->gt_batch, 0, (size_t)L * ev->dim * sizeof(float));
      memcpy(ev->gt_batch + (size_t)(lo - c) * ev->dim, gt->x + (size_t)(lo - off) * ev->dim,
             (size_t)(hi - lo) * ev->dim * sizeof(float));
      x = ev->gt_batch;
    }
    const float *logits = fh_model_forward(run->model, x, L, 0);
    for (long long i = lo; i < hi; i++) {
      const float *z = logits + (size_t)(i - c) * ev->C;
      int y = gt->y[i - off], arg = 0;
      for (int j = 1; j < ev->C; j++)
        if (z[j] > z[arg]) arg = j;
      double s = 0;
      for (int j = 0; j < ev->C; j++) s += exp((double)z[j] - z[arg]);
      double l = (double)z[arg] + log(s) - z[y];
      out[0] += arg == y;
      out[1] += 1;
      if (isfinite(l) && l * scale < 9.0e18 / (double)(ev->gt_total + 1)) out[2] += llround(l * scale);
      else out[3] += 1;
    }
  }
}

/* ---- one evaluation ------------------------------------------------------------ */

/* Long on purpose: the evaluation modes in their documented order (global
 * model, each client's own, fine-tuning, held-out clients) over one table of
 * counts that a single reduction sums, so the modes share one collective. */
int fh_evaluate(fh_evaluator *ev, fh_run *run, int t, fh_round_metrics *m) {
  const int K = ev->K;
  fh_model *model = run->model;
  memset(ev->table, 0, (size_t)ev->nrows * K * sizeof(double));
  int rc = 0, bad = -1;

  /* The global model on every training client's splits. */
  const float *g = run->global;
  if (run->alg->global_model && (ev->on[MODE_GLOBAL] || ev->on[MODE_FINETUNE] || ev->on[MODE_HOLDOUT])) {
    g = run->alg->global_model(run);
    if (!g) rc = FH_ERR_RUNTIME, g = run->global;
  }
  if (ev->on[MODE_GLOBAL] && rc == 0) {
    fh_model_load_state(model, g);
    double *train = ev->table + (size_t)ev->row_train * K;
    for (int i = 0; i < run->nlocal; i++) {
      const fh_client_data *cd = &run->data->clients[i];
      if (run->nholdout && fh_run_is_holdout(run, cd->id)) continue;
      record_test(ev, MODE_GLOBAL, model, cd);
      double train_loss = 0;
      eval_split(model, &cd->train, ev->dim, ev->evb, &train_loss);
      train[cd->id] = train_loss;
      train[(size_t)K + cd->id] = cd->train.n;
    }
  }
  int64_t gt[4] = {0, 0, 0, 0};
  if (ev->global_test && rc == 0) eval_global_test(ev, run, gt);

  /* Each training client's own model. */
  for (int i = 0; i < run->nlocal && rc == 0 && ev->on[MODE_PERSONAL]; i++) {
    const fh_client_data *cd = &run->data->clients[i];
    if (run->nholdout && fh_run_is_holdout(run, cd->id)) continue;
    fh_client_ctx ctx = {.id = cd->id, .round = t, .data = cd, .model = model};
    if (run->alg->client_evaluate) { /* the algorithm runs the client's model itself */
      double correct = 0, loss = 0;
      rc = run->alg->client_evaluate(run, &ctx, &cd->test, &correct, &loss);
      double *tab = ev->table + (size_t)ev->row[MODE_PERSONAL] * K;
      tab[(size_t)COL_CORRECT * K + cd->id] = correct;
      tab[(size_t)COL_COUNT * K + cd->id] = cd->test.n;
      tab[(size_t)COL_LOSS * K + cd->id] = loss;
    } else {
      rc = fh_run_client_model(run, &ctx);
      if (rc == 0) record_test(ev, MODE_PERSONAL, model, cd);
    }
    if (rc) bad = cd->id;
  }

  /* Fine-tuning the global model, then held-out clients adapting it. */
  for (int mode = MODE_FINETUNE; mode <= MODE_HOLDOUT && rc == 0; mode++) {
    if (!ev->on[mode]) continue;
    for (int i = 0; i < run->nlocal && rc == 0; i++) {
      const fh_client_data *cd = &run->data->clients[i];
      if ((mode == MODE_HOLDOUT) != (run->nholdout && fh_run_is_holdout(run, cd->id))) continue;
      fh_model_load_state(model, g);
      fh_rng rng;
      fh_rng_init(&rng, run->seed, FH_RNG_EVAL, (uint32_t)cd->id, (uint32_t)t);
      if (mode == MODE_HOLDOUT) {
        rc = fh_local_sgd_adapt(&ev->sgd, model, &cd->train, ev->adapt_steps, ev->adapt_batch, ev->adapt_lr,
                                &rng);
      } else if (ev->ft_epochs > 0) {
        double loss;
        rc = cd->train.n > 0 ? fh_local_sgd_run_rng(&ev->sgd, model, &cd->train, &rng, &loss) : 0;
      } else {
        rc = fh_local_sgd_adapt(&ev->sgd, model, &cd->train, ev->ft_steps, ev->ft_batch, ev->ft_lr, &rng);
      }
      if (rc) bad = cd->id;
      else record_test(ev, mode, model, cd);
    }
  }
  if (rc && bad >= 0) fh_error_prefix("evaluation after round %d, client %d: ", t + 1, bad);
  else if (rc) fh_error_prefix("evaluation after round %d, the global model: ", t + 1);
  FH_TRY(fh_error_agree(run->comm, rc));

  if (ev->nrows > 0)
    MPI_Reduce(run->rank == 0 ? MPI_IN_PLACE : ev->table, ev->table, ev->nrows * K, MPI_DOUBLE, MPI_SUM, 0,
               run->comm);
  if (ev->global_test)
    MPI_Reduce(run->rank == 0 ? MPI_IN_PLACE : gt, gt, 4, MPI_INT64_T, MPI_SUM, 0, run->comm);
  if (run->rank != 0) return 0;

  if (ev->on[MODE_GLOBAL]) {
    const double *train = ev->table + (size_t)ev->row_train * K;
    double trl = 0, trn = 0;
    for (int k = 0; k < K; k++) trl += train[k], trn += train[(size_t)K + k];
    m->train_loss = trn > 0 ? trl / trn : NAN;
    summarise(ev, ev->table + (size_t)ev->row[MODE_GLOBAL] * K, &m->test_accuracy, &m->test_loss,
              m->client_acc);
  }
  if (ev->global_test) {
    m->global_test_accuracy = (double)gt[0] / (double)gt[1];
    m->global_test_loss = gt[3] > 0 ? INFINITY : (double)gt[2] / 4294967296.0 / (double)gt[1];
  }
  fh_eval_stats *stats[NMODES] = {NULL, &m->personal, &m->finetune, &m->holdout};
  for (int mode = MODE_PERSONAL; mode < NMODES; mode++)
    if (ev->on[mode])
      summarise(ev, ev->table + (size_t)ev->row[mode] * K, &stats[mode]->accuracy, &stats[mode]->loss,
                stats[mode]->client_acc);
  return 0;
}
