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
    {"eval.finetune_from", FH_T_ENUM, "global", 0, 0, "global|own",
     "fine-tuning starts from the global model, or from each client's own model (LIPS: the global weights with "
     "its own biases and BatchNorm; a run without client models: the global model)"},
    {"eval.finetune_final", FH_T_BOOL, "false", 0, 0, NULL,
     "fine-tune only at the run's last evaluation (LIPS's final fine-tune), not at every one"},
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

/* One split in the stream of rows the global model is evaluated on: every
 * training client's test split, then its train split, clients in id order. */
typedef struct {
  const fh_split *sp;
  int id, train;
} eval_seg;

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
  int ft_own, ft_final; /* eval.finetune_from = own, eval.finetune_final */
  float ft_lr, adapt_lr;
  /* the global model on the training clients' splits: one stream of rows */
  eval_seg *segs;                /* [nsegs] this rank's splits in stream order */
  int nsegs;
  long long cs_offset, cs_total; /* this rank's block of the stream, its length */
  float *probs;                  /* [C] one row's softmax                */
  int target_train;              /* held-out clients score in training mode */
  /* global test set */
  int global_test;
  long long gt_offset, gt_total; /* this rank's block in the whole set   */
  float *batch;                  /* [evb, dim] gathered, padded chunk    */
};

/* This rank's block [*offset, *offset + n) of a stream the ranks hold in rank
 * order, and the stream's length. Collective. */
static void stream_block(MPI_Comm comm, long long n, long long *offset, long long *total) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  *offset = 0;
  MPI_Exscan(&n, offset, 1, MPI_LONG_LONG, MPI_SUM, comm);
  if (rank == 0) *offset = 0; /* MPI_Exscan leaves rank 0's undefined */
  MPI_Allreduce(&n, total, 1, MPI_LONG_LONG, MPI_SUM, comm);
}

int fh_evaluator_create(fh_evaluator **out, fh_run *run) {
  const fh_config *cfg = run->cfg;
  fh_evaluator *ev = fh_calloc(1, sizeof *ev);
  *out = ev;
  ev->K = run->map.num_clients;
  ev->evb = (int)fh_cfg_int(cfg, "run.eval_batch");
  ev->dim = run->data->dim;
  ev->C = fh_model_num_classes(run->model); /* logits: model.outputs, the classes by default */
  const int has_global = !(run->alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL));
  ev->ft_steps = (int)fh_cfg_int(cfg, "eval.finetune_steps");
  ev->ft_epochs = (int)fh_cfg_int(cfg, "eval.finetune_epochs");
  ev->ft_batch = (int)fh_cfg_int(cfg, "train.batch_size");
  ev->ft_own = strcmp(fh_cfg_str(cfg, "eval.finetune_from"), "own") == 0 && fh_run_has_client_model(run);
  ev->ft_final = fh_cfg_bool(cfg, "eval.finetune_final");
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
  ev->probs = fh_malloc((size_t)ev->C * sizeof(float));
  ev->table = fh_malloc((size_t)ev->nrows * ev->K * sizeof(double) + 1);
  if (run->rank == 0) ev->acc = fh_malloc((size_t)ev->K * sizeof(double));
  fh_local_sgd_create(&ev->sgd, cfg, ev->dim, fh_model_nparams(run->model));
  ev->sgd.epochs = ev->ft_epochs;
  ev->sgd.iterations = 0; /* fine-tuning counts eval.finetune_epochs, whatever train.iterations says */
  ev->sgd.opt.lr = ev->ft_lr;

  /* The training clients' splits as one stream: ranks host contiguous blocks
   * of clients in rank order, so their rows are contiguous blocks of it. */
  ev->segs = fh_malloc((size_t)(2 * run->nlocal + 1) * sizeof(eval_seg));
  long long n = 0;
  for (int i = 0; i < run->nlocal && has_global; i++) {
    const fh_client_data *cd = &run->data->clients[i];
    if (run->nholdout && fh_run_is_holdout(run, cd->id)) continue;
    ev->segs[ev->nsegs++] = (eval_seg){&cd->test, cd->id, 0};
    ev->segs[ev->nsegs++] = (eval_seg){&cd->train, cd->id, 1};
    n += cd->test.n + cd->train.n;
  }
  stream_block(run->comm, n, &ev->cs_offset, &ev->cs_total);

  /* The global test set: blocks over ranks in rank order. */
  stream_block(run->comm, run->data->global_test.n, &ev->gt_offset, &ev->gt_total);
  ev->global_test = has_global && fh_cfg_bool(cfg, "eval.global_test") && ev->gt_total > 0;
  ev->batch = fh_malloc((size_t)ev->evb * ev->dim * sizeof(float));
  return 0;
}

void fh_evaluator_free(fh_evaluator *ev) {
  if (!ev) return;
  fh_local_sgd_destroy(&ev->sgd);
  free(ev->table);
  free(ev->acc);
  free(ev->segs);
  free(ev->probs);
  free(ev->batch);
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

/* A position in a list of splits read as one sequence of rows. */
typedef struct {
  const eval_seg *segs;
  int nsegs, s, r; /* split s, its row r */
} seg_cursor;

static void cursor_skip_empty(seg_cursor *cur) {
  while (cur->s < cur->nsegs && cur->r >= cur->segs[cur->s].sp->n) cur->s++, cur->r = 0;
}

/* What a stream's rows are and what becomes of their logits. */
typedef struct {
  const float *(*row)(void *ctx, seg_cursor *cur, long long i); /* local row i's features */
  void (*take)(void *ctx, fh_evaluator *ev, seg_cursor *cur, long long i, const float *z); /* its logits */
  void *ctx;
} stream_io;

/* The model (in evaluation mode) over this rank's block [off, off + n) of a
 * stream of `total` rows held by the ranks in rank order. Forward batches are
 * the chunks [c, c + evb) of the whole stream, so every row is computed in the
 * same batch position and size on any rank count; a chunk split between
 * ranks is padded with zero rows (rows of a batch do not mix in evaluation),
 * and the model skips the pieces of it that hold none of this rank's rows
 * (fh_model_infer_rows). Rows are taken in stream order, logits handed over
 * in the same order. */
static void eval_stream(fh_evaluator *ev, fh_model *m, long long off, long long n, long long total,
                        const stream_io *io, seg_cursor *in, seg_cursor *out) {
  const long long end = off + n;
  const size_t rowb = (size_t)ev->dim * sizeof(float);
  for (long long c = off / ev->evb * ev->evb; c < end; c += ev->evb) {
    const int L = (int)(total - c < ev->evb ? total - c : ev->evb);
    const long long lo = c > off ? c : off, hi = c + L < end ? c + L : end;
    if (lo > c || hi < c + L) memset(ev->batch, 0, (size_t)L * rowb);
    for (long long i = lo; i < hi; i++) memcpy(ev->batch + (size_t)(i - c) * ev->dim, io->row(io->ctx, in, i), rowb);
    const float *logits = fh_model_infer_rows(m, ev->batch, L, (int)(lo - c), (int)(hi - c));
    for (long long i = lo; i < hi; i++) io->take(io->ctx, ev, out, i, logits + (size_t)(i - c) * ev->C);
  }
}

static int argmax_row(const float *z, int C) {
  int best = 0; /* strict > keeps the lowest index on ties, as fh_model_evaluate */
  for (int j = 1; j < C; j++)
    if (z[j] > z[best]) best = j;
  return best;
}

/* The training clients' stream (ctx: the evaluator): a row is the cursor's,
 * advanced. */
static const float *client_row(void *ctx, seg_cursor *cur, long long i) {
  (void)i;
  const fh_evaluator *ev = ctx;
  cursor_skip_empty(cur);
  return cur->segs[cur->s].sp->x + (size_t)cur->r++ * ev->dim;
}

/* Its logits: the row's cross-entropy (the per-row term of
 * fh_softmax_ce_forward) into the client's loss sum of that split, in row
 * order; a test row's hit into its correct count. */
static void client_take(void *ctx, fh_evaluator *ev, seg_cursor *cur, long long i, const float *z) {
  (void)ctx, (void)i;
  cursor_skip_empty(cur);
  const eval_seg *sg = &cur->segs[cur->s];
  const int32_t y = sg->sp->y[cur->r++];
  const double l = fh_softmax_ce_forward(ev->probs, z, &y, 1, ev->C);
  const int K = ev->K;
  if (sg->train) {
    ev->table[(size_t)ev->row_train * K + sg->id] += l;
  } else {
    double *t = ev->table + (size_t)ev->row[MODE_GLOBAL] * K;
    t[(size_t)COL_CORRECT * K + sg->id] += argmax_row(z, ev->C) == y;
    t[(size_t)COL_LOSS * K + sg->id] += l;
  }
}

/* The global model (loaded in run->model) on every training client's test
 * and train splits, as one stream in batches of evb rows whatever the
 * clients' sizes: correct counts and loss sums (in row order, so the same on
 * any rank count) per client. */
static void eval_clients(fh_evaluator *ev, fh_run *run) {
  const int K = ev->K;
  double *t = ev->table + (size_t)ev->row[MODE_GLOBAL] * K, *train = ev->table + (size_t)ev->row_train * K;
  long long n = 0;
  for (int k = 0; k < ev->nsegs; k++) {
    const eval_seg *sg = &ev->segs[k];
    if (sg->train) train[(size_t)K + sg->id] = sg->sp->n;
    else t[(size_t)COL_COUNT * K + sg->id] = sg->sp->n;
    n += sg->sp->n;
  }
  seg_cursor in = {ev->segs, ev->nsegs, 0, 0}, out = in;
  const stream_io io = {client_row, client_take, ev};
  eval_stream(ev, run->model, ev->cs_offset, n, ev->cs_total, &io, &in, &out);
}

/* The global test set's stream: rows in place; per-sample losses summed in
 * fixed point. out: correct, count, loss * 2^32, non-finite losses. */
typedef struct {
  const fh_split *gt;
  long long off, total;
  int dim;
  int64_t *out;
} gt_ctx;

static const float *gt_row(void *ctx, seg_cursor *cur, long long i) {
  (void)cur;
  const gt_ctx *g = ctx;
  return g->gt->x + (size_t)(i - g->off) * g->dim;
}

static void gt_take(void *ctx, fh_evaluator *ev, seg_cursor *cur, long long i, const float *z) {
  (void)cur;
  gt_ctx *g = ctx;
  int64_t *out = g->out;
  const double scale = 4294967296.0;
  const int y = g->gt->y[i - g->off], arg = argmax_row(z, ev->C);
  double s = 0;
  for (int j = 0; j < ev->C; j++) s += exp((double)z[j] - z[arg]);
  const double l = (double)z[arg] + log(s) - z[y];
  out[0] += arg == y;
  out[1] += 1;
  if (isfinite(l) && l * scale < 9.0e18 / (double)(g->total + 1)) out[2] += llround(l * scale);
  else out[3] += 1;
}

/* The global model (loaded in run->model) on this rank's block of the global
 * test set. */
static void eval_global_test(fh_evaluator *ev, fh_run *run, int64_t out[4]) {
  memset(out, 0, 4 * sizeof(int64_t));
  gt_ctx g = {&run->data->global_test, ev->gt_offset, ev->gt_total, ev->dim, out};
  const stream_io io = {gt_row, gt_take, &g};
  eval_stream(ev, run->model, ev->gt_offset, g.gt->n, ev->gt_total, &io, NULL, NULL);
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
    eval_clients(ev, run);
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

  /* Fine-tuning the global model (or the client's own), then held-out
   * clients adapting it. */
  const int ft_now = ev->on[MODE_FINETUNE] && (!ev->ft_final || t == run->rounds - 1);
  for (int mode = MODE_FINETUNE; mode <= MODE_HOLDOUT && rc == 0; mode++) {
    if (!ev->on[mode] || (mode == MODE_FINETUNE && !ft_now)) continue;
    for (int i = 0; i < run->nlocal && rc == 0; i++) {
      const fh_client_data *cd = &run->data->clients[i];
      if ((mode == MODE_HOLDOUT) != (run->nholdout && fh_run_is_holdout(run, cd->id))) continue;
      fh_client_ctx own = {.id = cd->id, .round = t, .data = cd, .model = model};
      if (mode == MODE_FINETUNE && ev->ft_own) rc = fh_run_client_model(run, &own);
      else fh_model_load_state(model, g);
      if (rc) {
        bad = cd->id;
        break;
      }
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
    if (ev->on[mode] && (mode != MODE_FINETUNE || ft_now))
      summarise(ev, ev->table + (size_t)ev->row[mode] * K, &stats[mode]->accuracy, &stats[mode]->loss,
                stats[mode]->client_acc);
  return 0;
}
