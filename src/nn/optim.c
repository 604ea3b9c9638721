/* Optimisers with PyTorch's update rules, element by element over a flat buffer. */
#include "nn/optim.h"

#include <math.h>

void fh_sgd_step(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                 size_t n, long long *steps) {
  const float lr = opt->lr, wd = opt->weight_decay, mu = opt->momentum;
  const float keep = 1.0f - opt->dampening;
  /* torch adds weight_decay * p only when weight_decay != 0 (0 * inf is NaN). */
#define FH_DECAYED(i) (wd != 0.0f ? grads[i] + wd * params[i] : grads[i])
  if (mu == 0.0f) {
    for (size_t i = 0; i < n; i++) {
      const float g = FH_DECAYED(i);
      params[i] -= lr * g;
    }
  } else if (*steps == 0) { /* torch: the buffer starts as a copy of the gradient */
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
  ++*steps;
#undef FH_DECAYED
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
