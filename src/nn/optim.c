/* Optimisers with PyTorch's update rules, element by element over a flat buffer. */
#include "nn/optim.h"

#include <assert.h>
#include <math.h>

/* The SGD update of one contiguous span; first selects torch's first step, where
 * the momentum buffer starts as a copy of the gradient. */
static void sgd_span(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                     size_t n, int first) {
  const float lr = opt->lr, wd = opt->weight_decay, mu = opt->momentum;
  const float keep = 1.0f - opt->dampening;
  /* torch adds weight_decay * p only when weight_decay != 0 (0 * inf is NaN). */
#define FH_DECAYED(i) (wd != 0.0f ? grads[i] + wd * params[i] : grads[i])
  if (mu == 0.0f) {
    for (size_t i = 0; i < n; i++) {
      const float g = FH_DECAYED(i);
      params[i] -= lr * g;
    }
  } else if (first) {
    for (size_t i = 0; i < n; i++) {
      float g = FH_DECAYED(i);
      momentum_buf[i] = g;
      g = opt->nesterov ? g + mu * g : g;
      params[i] -= lr * g;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float g = FH_DECAYED(i);
      const float buf = mu * momentum_buf[i] + keep * g;
      momentum_buf[i] = buf;
      g = opt->nesterov ? g + mu * buf : buf;
      params[i] -= lr * g;
    }
  }
#undef FH_DECAYED
}

void fh_sgd_step(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                 size_t n, long long *steps) {
  sgd_span(opt, params, grads, momentum_buf, n, *steps == 0);
  ++*steps;
}

/* Adam's per-step factors, rounded to float where torch's kernels take them as
 * float scalars. */
typedef struct {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, wd, eps;
  float bias_correction2_sqrt, neg_step_size;
} adam_factors;

static adam_factors adam_factors_at(const fh_adam *opt, long long step) {
  const double bc1 = 1.0 - pow(opt->beta1, (double)step);
  const double bc2 = 1.0 - pow(opt->beta2, (double)step);
  return (adam_factors){.beta1 = (float)opt->beta1,
                        .one_minus_beta1 = (float)(1.0 - opt->beta1),
                        .beta2 = (float)opt->beta2,
                        .one_minus_beta2 = (float)(1.0 - opt->beta2),
                        .wd = (float)opt->weight_decay,
                        .eps = (float)opt->eps,
                        .bias_correction2_sqrt = (float)sqrt(bc2),
                        .neg_step_size = (float)(-opt->lr / bc1)};
}

/* torch 1.13 _single_tensor_adam, operation by operation:
 *   g = grad + wd p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g
 *   p += -lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
static void adam_span(const adam_factors *f, float *params, const float *grads, float *exp_avg,
                      float *exp_avg_sq, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float g = f->wd != 0.0f ? grads[i] + f->wd * params[i] : grads[i];
    const float m = exp_avg[i] * f->beta1 + f->one_minus_beta1 * g;
    const float v = exp_avg_sq[i] * f->beta2 + f->one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const float denom = sqrtf(v) / f->bias_correction2_sqrt + f->eps;
    params[i] += f->neg_step_size * m / denom;
  }
}

void fh_adam_step(const fh_adam *opt, float *params, const float *grads, float *exp_avg,
                  float *exp_avg_sq, size_t n, long long *steps) {
  const adam_factors f = adam_factors_at(opt, *steps + 1);
  adam_span(&f, params, grads, exp_avg, exp_avg_sq, n);
  ++*steps;
}

/* Walks the spans of [0, n) outside the frozen ranges, in order. */
typedef struct {
  const fh_param_range *frozen;
  int nfrozen, next; /* the next frozen range to pass */
  size_t n, cursor;  /* everything before cursor is handled */
} trained_spans;

/* The next maximal trained span [*begin, *begin + *count); 0 when none is left. */
static int next_trained_span(trained_spans *it, size_t *begin, size_t *count) {
  while (it->cursor < it->n) {
    if (it->next == it->nfrozen) {
      *begin = it->cursor, *count = it->n - it->cursor;
      it->cursor = it->n;
      return 1;
    }
    const fh_param_range *r = &it->frozen[it->next++];
    assert(r->offset + r->count <= it->n);
    assert(it->next == 1 || r->offset >= r[-1].offset);
    const size_t start = it->cursor, end = r->offset + r->count;
    if (end > it->cursor) it->cursor = end;
    if (r->offset > start) {
      *begin = start, *count = r->offset - start;
      return 1;
    }
  }
  return 0;
}

void fh_sgd_step_frozen(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                        size_t n, long long *steps, const fh_param_range *frozen, int nfrozen) {
  trained_spans it = {.frozen = frozen, .nfrozen = nfrozen, .n = n};
  size_t begin, count;
  while (next_trained_span(&it, &begin, &count))
    sgd_span(opt, params + begin, grads + begin,
             opt->momentum != 0.0f ? momentum_buf + begin : momentum_buf, count, *steps == 0);
  ++*steps;
}

void fh_adam_step_frozen(const fh_adam *opt, float *params, const float *grads, float *exp_avg,
                         float *exp_avg_sq, size_t n, long long *steps,
                         const fh_param_range *frozen, int nfrozen) {
  const adam_factors f = adam_factors_at(opt, *steps + 1);
  trained_spans it = {.frozen = frozen, .nfrozen = nfrozen, .n = n};
  size_t begin, count;
  while (next_trained_span(&it, &begin, &count))
    adam_span(&f, params + begin, grads + begin, exp_avg + begin, exp_avg_sq + begin, count);
  ++*steps;
}

double fh_clip_grad_norm(float *grads, size_t n, double max_norm) {
  double ss = 0.0;
  for (size_t i = 0; i < n; i++) ss += (double)grads[i] * grads[i];
  const double norm = sqrt(ss);
  /* As torch: scale by max_norm / (norm + 1e-6) when that is below one; a
   * non-finite norm leaves the gradients alone (the loss shows the problem). */
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = (float)coef;
    for (size_t i = 0; i < n; i++) grads[i] *= c;
  }
  return norm;
}
