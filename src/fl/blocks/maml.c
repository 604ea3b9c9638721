/* The one-step MAML meta-gradient and Per-FedAvg's local step (see maml.h). */
#include "fl/blocks/maml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void fh_perfedavg_step_create(fh_perfedavg_step *s, int hf, float alpha, float beta, float delta,
                              fh_local_sgd *sgd, const fh_model *m) {
  memset(s, 0, sizeof *s);
  s->hf = hf;
  s->alpha = alpha;
  s->beta = beta;
  s->delta = delta;
  s->sgd = sgd;
  s->nparams = fh_model_nparams(m);
  s->nbuffers = fh_model_nbuffers(m);
  s->w = fh_malloc(s->nparams * sizeof(float));
  s->v = fh_malloc(s->nparams * sizeof(float));
  if (hf) {
    s->hplus = fh_malloc(s->nparams * sizeof(float));
    s->saved = fh_malloc((s->nbuffers ? s->nbuffers : 1) * sizeof(float));
  }
}

void fh_perfedavg_step_destroy(fh_perfedavg_step *s) {
  free(s->w);
  free(s->v);
  free(s->hplus);
  free(s->saved);
  memset(s, 0, sizeof *s);
}

static int check_loss(float loss, const char *where) {
  if (isfinite(loss)) return 0;
  return FH_FAIL(FH_ERR_DIVERGED, "loss became %s at %s; lower the step sizes (perfedavg.alpha and "
                                  "perfedavg.beta, or augfl.alpha and raise augfl.rho)",
                 isnan(loss) ? "NaN" : "infinite", where);
}

int fh_maml_meta_gradient(fh_perfedavg_step *s, fh_model *m, fh_row_set d, fh_row_set dq, fh_row_set dh,
                          float delta, float *ghat, double *query_loss) {
  const size_t n = s->nparams;
  float *p = fh_model_params(m), *g = fh_model_grads(m);
  const float alpha = s->alpha;
  memcpy(s->w, p, n * sizeof(float));
  /* phi = w - alpha grad f(w; D) */
  FH_TRY(check_loss(fh_local_sgd_gradient(s->sgd, m, d.sp, d.idx, d.n), "the inner step"));
  for (size_t i = 0; i < n; i++) p[i] = s->w[i] - alpha * g[i];
  /* v = grad f(phi; D') */
  float ql = fh_local_sgd_gradient(s->sgd, m, dq.sp, dq.idx, dq.n);
  FH_TRY(check_loss(ql, "the outer step"));
  *query_loss = ql;
  memcpy(s->v, g, n * sizeof(float));
  if (!s->hf) {
    memcpy(p, s->w, n * sizeof(float));
    if (ghat != s->v) memcpy(ghat, s->v, n * sizeof(float));
    return 0;
  }
  /* Hv by central differences at w on D''; the probes keep the BN statistics */
  float *buf = fh_model_buffers(m);
  if (s->nbuffers) memcpy(s->saved, buf, s->nbuffers * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = s->w[i] + delta * s->v[i];
  FH_TRY(check_loss(fh_local_sgd_gradient(s->sgd, m, dh.sp, dh.idx, dh.n), "the Hessian probe"));
  memcpy(s->hplus, g, n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = s->w[i] - delta * s->v[i];
  FH_TRY(check_loss(fh_local_sgd_gradient(s->sgd, m, dh.sp, dh.idx, dh.n), "the Hessian probe"));
  if (s->nbuffers) memcpy(buf, s->saved, s->nbuffers * sizeof(float));
  const float inv2d = 1.0f / (2.0f * delta);
  for (size_t i = 0; i < n; i++) {
    float hv = (s->hplus[i] - g[i]) * inv2d;
    ghat[i] = s->v[i] - alpha * hv;
  }
  memcpy(p, s->w, n * sizeof(float));
  return 0;
}

int fh_perfedavg_local_step(fh_perfedavg_step *s, fh_model *m, const fh_split *sp, const int *d0,
                            const int *d1, const int *d2, int b, double *query_loss) {
  FH_TRY(fh_maml_meta_gradient(s, m, (fh_row_set){sp, d0, b}, (fh_row_set){sp, d1, b}, (fh_row_set){sp, d2, b},
                               s->delta, s->v, query_loss));
  float *p = fh_model_params(m);
  for (size_t i = 0; i < s->nparams; i++) p[i] = s->w[i] - s->beta * s->v[i];
  return 0;
}

