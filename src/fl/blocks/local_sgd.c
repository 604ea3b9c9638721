#include "fl/blocks/local_sgd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/profile.h"
#include "core/rng.h"

const fh_key_spec fh_train_keys[] = {
    {"train.epochs", FH_T_INT, "1", 1, 100000, NULL, "local epochs E per round (unless train.iterations is set)"},
    {"train.iterations", FH_T_INT, "0", 0, 1e9, NULL,
     "local minibatch steps per round, whatever the client's size (FedGC's authors: 200); 0 = train.epochs "
     "passes over the client's rows. Local-SGD algorithms and Per-FedAvg honour it; the others refuse it"},
    {"train.batch_size", FH_T_INT, "32", 1, 1 << 20, NULL, "local minibatch size"},
    {"train.lr", FH_T_REAL, "0.05", 0, 1e6, NULL, "local learning rate eta"},
    {"train.momentum", FH_T_REAL, "0", 0, 1, NULL, "SGD momentum (PyTorch semantics)"},
    {"train.weight_decay", FH_T_REAL, "0", 0, 1e6, NULL, "L2 weight decay added to the gradient"},
    {"train.nesterov", FH_T_BOOL, "false", 0, 0, NULL, "Nesterov momentum"},
    FH_KEYS_END};

void fh_local_sgd_create(fh_local_sgd *t, const fh_config *cfg, int dim, size_t nparams) {
  memset(t, 0, sizeof *t);
  t->epochs = (int)fh_cfg_int(cfg, "train.epochs");
  t->iterations = fh_cfg_int(cfg, "train.iterations");
  t->batch_size = (int)fh_cfg_int(cfg, "train.batch_size");
  t->opt.lr = (float)fh_cfg_real(cfg, "train.lr");
  t->opt.momentum = (float)fh_cfg_real(cfg, "train.momentum");
  t->opt.dampening = 0.0f;
  t->opt.weight_decay = (float)fh_cfg_real(cfg, "train.weight_decay");
  t->opt.nesterov = fh_cfg_bool(cfg, "train.nesterov");
  t->dim = dim;
  t->xb = fh_malloc((size_t)t->batch_size * dim * sizeof(float));
  t->yb = fh_malloc((size_t)t->batch_size * sizeof(int32_t));
  t->nparams = nparams;
  t->momentum = t->opt.momentum > 0 ? fh_malloc(nparams * sizeof(float)) : NULL;
}

void fh_local_sgd_destroy(fh_local_sgd *t) {
  free(t->xb);
  free(t->yb);
  free(t->order);
  free(t->momentum);
  free(t->gsum);
  memset(t, 0, sizeof *t);
}

static void ensure_order(fh_local_sgd *t, int n) {
  if (n > t->max_n) { /* grows to the largest client once, then reused */
    free(t->order);
    t->order = fh_malloc((size_t)n * sizeof(int));
    t->max_n = n;
  }
}

/* xb, yb <- rows idx[start .. start+B) of sp (rows start.. when idx is NULL). */
static void gather(fh_local_sgd *t, const fh_split *sp, const int *idx, int start, int B) {
  const size_t row = (size_t)t->dim * sizeof(float);
  for (int i = 0; i < B; i++) {
    int s = idx ? idx[start + i] : start + i;
    memcpy(t->xb + (size_t)i * t->dim, sp->x + (size_t)s * t->dim, row);
    t->yb[i] = sp->y[s];
  }
}

int fh_local_sgd_run(fh_local_sgd *t, fh_model *m, const fh_split *train, uint64_t seed,
                     int client, int round, double *last_epoch_loss) {
  fh_rng rng;
  fh_rng_init(&rng, seed, FH_RNG_SHUFFLE, (uint32_t)client, (uint32_t)round);
  return fh_local_sgd_run_rng(t, m, train, &rng, last_epoch_loss);
}

/* One minibatch step on rows order[start .. start+B) of train; *loss gets
 * its mean loss. keep_grad: copy the loss gradient to t->last_grad first. */
static int local_step(fh_local_sgd *t, fh_model *m, const fh_split *train, int start, int B, fh_rng *aug_rng,
                      int keep_grad, long long *steps, float *loss) {
  const fh_augment *aug = train->augment;
  float *params = fh_model_params(m), *grads = fh_model_grads(m);
  gather(t, train, t->order, start, B);
  if (aug) fh_augment_batch(aug, t->xb, B, aug->c, aug->h, aug->w, aug_rng);
  *loss = fh_model_loss_grad(m, t->xb, t->yb, B);
  fh_prof_count_flops(fh_model_flops_forward(m, B) + fh_model_flops_backward(m, B));
  if (!isfinite(*loss))
    return FH_FAIL(FH_ERR_DIVERGED,
                   "training loss became %s at local step %lld; "
                   "lower train.lr (now %g) or check the client's data",
                   isnan(*loss) ? "NaN" : "infinite", *steps + 1, (double)t->opt.lr);
  if (t->last_grad && keep_grad) memcpy(t->last_grad, grads, t->nparams * sizeof(float));
  if (t->hook) t->hook(t->hook_ctx, params, grads, t->nparams);
  fh_sgd_step(&t->opt, params, grads, t->momentum, t->nparams, steps);
  return 0;
}

int fh_local_sgd_run_rng(fh_local_sgd *t, fh_model *m, const fh_split *train, fh_rng *rng,
                         double *last_epoch_loss) {
  ensure_order(t, train->n);
  long long steps = 0;
  double loss_sum = 0.0;
  long long loss_rows = 0;
  /* Augmentation draws from its own stream (same seed, client and round as the
   * shuffling stream, purpose FH_RNG_AUGMENT), so the batch order is the same
   * with augmentation on or off. */
  fh_rng aug_rng;
  if (train->augment) fh_rng_derive(&aug_rng, rng, FH_RNG_AUGMENT);
  float loss;
  if (t->iterations > 0 && train->n > 0) {
    /* a fixed number of steps: batches taken in turn from permutations of
     * the rows, a new permutation when one is used up (its last batch may be
     * short, as a data loader without drop_last) */
    int start = train->n;
    for (long long it = 0; it < t->iterations; it++) {
      if (start >= train->n) {
        fh_rng_permutation(rng, t->order, train->n);
        start = 0;
      }
      const int B = train->n - start < t->batch_size ? train->n - start : t->batch_size;
      FH_TRY(local_step(t, m, train, start, B, &aug_rng, it == t->iterations - 1, &steps, &loss));
      loss_sum += (double)loss * B;
      loss_rows += B;
      start += B;
    }
  } else {
    for (int e = 0; e < t->epochs; e++) {
      fh_rng_permutation(rng, t->order, train->n);
      loss_sum = 0.0;
      loss_rows = 0;
      for (int start = 0; start < train->n; start += t->batch_size) {
        const int B = train->n - start < t->batch_size ? train->n - start : t->batch_size;
        FH_TRY(local_step(t, m, train, start, B, &aug_rng, e == t->epochs - 1 && start + B >= train->n, &steps,
                          &loss));
        loss_sum += (double)loss * B;
        loss_rows += B;
      }
    }
  }
  t->steps = steps;
  *last_epoch_loss = loss_rows > 0 ? loss_sum / (double)loss_rows : 0.0;
  return 0;
}

float fh_local_sgd_gradient(fh_local_sgd *t, fh_model *m, const fh_split *sp, const int *idx,
                            int count) {
  if (count <= t->batch_size) {
    gather(t, sp, idx, 0, count);
    return fh_model_loss_grad(m, t->xb, t->yb, count);
  }
  /* sum over chunks of (B / count) * (chunk's mean gradient) */
  if (!t->gsum) t->gsum = fh_malloc(t->nparams * sizeof(float));
  memset(t->gsum, 0, t->nparams * sizeof(float));
  const float *g = fh_model_grads(m);
  double loss = 0.0;
  for (int start = 0; start < count; start += t->batch_size) {
    int B = count - start < t->batch_size ? count - start : t->batch_size;
    gather(t, sp, idx, start, B);
    float l = fh_model_loss_grad(m, t->xb, t->yb, B);
    loss += (double)l * B;
    const float w = (float)B / (float)count;
    for (size_t i = 0; i < t->nparams; i++) t->gsum[i] += w * g[i];
  }
  memcpy(fh_model_grads(m), t->gsum, t->nparams * sizeof(float));
  return (float)(loss / count);
}

int fh_local_sgd_adapt(fh_local_sgd *t, fh_model *m, const fh_split *train, int steps, int batch,
                       float lr, fh_rng *rng) {
  if (train->n == 0 || steps <= 0) return 0;
  const int whole = batch <= 0 || batch >= train->n;
  ensure_order(t, train->n);
  fh_sgd opt = {.lr = lr};
  long long nsteps = 0;
  int pos = train->n; /* draw a permutation before the first step */
  for (int s = 0; s < steps; s++) {
    float loss;
    if (whole) {
      loss = fh_local_sgd_gradient(t, m, train, NULL, train->n);
    } else {
      if (pos + batch > train->n) {
        fh_rng_permutation(rng, t->order, train->n);
        pos = 0;
      }
      loss = fh_local_sgd_gradient(t, m, train, t->order + pos, batch);
      pos += batch;
    }
    if (!isfinite(loss))
      return FH_FAIL(FH_ERR_DIVERGED, "loss became %s at adaptation step %d; lower the adaptation "
                                      "learning rate (now %g)",
                     isnan(loss) ? "NaN" : "infinite", s + 1, (double)lr);
    fh_sgd_step(&opt, fh_model_params(m), fh_model_grads(m), NULL, t->nparams, &nsteps);
  }
  return 0;
}

int fh_local_sgd_refuse_augment(const fh_dataset *ds, const char *who, const char *why) {
  if (!fh_augment_active(&ds->augment)) return 0;
  return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = %s cannot honour data.augment_* (%s does not augment); turn "
                                "data.augment_crop_pad, data.augment_flip and data.augment_erase_p off",
                 who, why);
}
