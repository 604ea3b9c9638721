/* Mutual learning of two networks on one batch (see mutual.h). */
#include "fl/blocks/mutual.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/profile.h"
#include "core/rng.h"
#include "fl/client_state.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/loss.h"

void fh_mutual_create(fh_mutual *m, int C, int d, int max_batch) {
  memset(m, 0, sizeof *m);
  m->T = 1.0f;
  m->C = C;
  m->d = d;
  m->max_batch = max_batch;
  const size_t nc = (size_t)max_batch * C, nd = (size_t)max_batch * (d > 0 ? d : 1);
  m->z_own = fh_malloc(nc * sizeof(float));
  m->z_sh = fh_malloc(nc * sizeof(float));
  m->ps = fh_malloc(nc * sizeof(float));
  m->pt = fh_malloc(nc * sizeof(float));
  m->d_own = fh_malloc(nc * sizeof(float));
  m->d_sh = fh_malloc(nc * sizeof(float));
  m->dk = fh_malloc(nc * sizeof(float));
  m->dh_own = fh_malloc(nd * sizeof(float));
  m->dh_sh = fh_malloc(nd * sizeof(float));
}

void fh_mutual_destroy(fh_mutual *m) {
  free(m->z_own);
  free(m->z_sh);
  free(m->ps);
  free(m->pt);
  free(m->d_own);
  free(m->d_sh);
  free(m->dk);
  free(m->dh_own);
  free(m->dh_sh);
  memset(m, 0, sizeof *m);
}

/* dz = w_ce dCE(z, y) + w_kd dKD(z || teacher); returns the CE. */
static double side(fh_mutual *m, fh_hnet *n, const float *z, const float *teacher, const int32_t *y, int B,
                   float w_ce, float w_kd, float *dz) {
  const int C = m->C;
  const size_t nc = (size_t)B * C;
  const double ce = fh_softmax_ce_forward(n->probs, z, y, B, C);
  fh_softmax_ce_backward(dz, n->probs, y, B, C);
  for (size_t i = 0; i < nc; i++) dz[i] *= w_ce;
  if (w_kd != 0.0f) {
    fh_kd_loss_forward(m->ps, m->pt, z, teacher, B, C, m->T);
    fh_kd_loss_backward(m->dk, m->ps, m->pt, B, C, m->T);
    for (size_t i = 0; i < nc; i++) dz[i] += w_kd * m->dk[i];
  }
  return ce;
}

int fh_mutual_batch(fh_mutual *m, fh_hnet *own, fh_hnet *shared, const float *x, const int32_t *y, int B,
                    double *ce_own, double *ce_sh) {
  const int C = m->C, d = m->d;
  const size_t nc = (size_t)B * C;
  const float *h_own = fh_hnet_features(own, x, B, 1);
  memcpy(m->z_own, fh_hnet_head_forward(own, h_own, B), nc * sizeof(float));
  const float *h_sh = fh_hnet_features(shared, x, B, 1);
  memcpy(m->z_sh, fh_hnet_head_forward(shared, h_sh, B), nc * sizeof(float));

  /* the adaptive scale needs both CEs first */
  float scale = 1.0f;
  if (m->adaptive) {
    const double a = fh_softmax_ce_forward(own->probs, m->z_own, y, B, C);
    const double b = fh_softmax_ce_forward(shared->probs, m->z_sh, y, B, C);
    if (!isfinite(a) || !isfinite(b)) return 1;
    scale = (float)(1.0 / (a + b + 1e-12));
  }
  *ce_own = side(m, own, m->z_own, m->z_sh, y, B, m->w_ce_own, m->w_kd_own * scale, m->d_own);
  *ce_sh = side(m, shared, m->z_sh, m->z_own, y, B, m->w_ce_sh, m->w_kd_sh * scale, m->d_sh);
  if (!isfinite(*ce_own) || !isfinite(*ce_sh)) return 1;

  fh_hnet_head_backward(own, h_own, m->d_own, m->dh_own, B);
  fh_hnet_head_backward(shared, h_sh, m->d_sh, m->dh_sh, B);
  const float wh = m->w_hidden * scale;
  if (wh != 0.0f && d > 0) {
    /* d/dh_own of wh * mean (h_own - h_sh)^2 = 2 wh (h_own - h_sh) / (B d); the
     * shared side the opposite */
    const size_t n = (size_t)B * d;
    const float k = (float)(2.0 * wh / (double)n);
    for (size_t i = 0; i < n; i++) {
      const float diff = h_own[i] - h_sh[i];
      m->dh_own[i] += k * diff;
      m->dh_sh[i] -= k * diff;
    }
  }
  fh_hnet_features_backward(own, x, m->dh_own, B);
  fh_hnet_features_backward(shared, x, m->dh_sh, B);
  return 0;
}

int fh_mutual_train(fh_mutual *m, fh_hetero *h, fh_hnet *own, fh_hnet *shared, const fh_split *tr,
                    fh_rng *rng, float *mom_own, long long *steps_own, float *mom_sh, long long *steps_sh,
                    double *last_loss) {
  const double flops = fh_hnet_flops_features(own, 1, 0) + fh_hnet_flops_features(own, 1, 1) +
                       fh_hnet_flops_head(own, 1, 0) + fh_hnet_flops_head(own, 1, 1) +
                       fh_hnet_flops_features(shared, 1, 0) + fh_hnet_flops_features(shared, 1, 1) +
                       fh_hnet_flops_head(shared, 1, 0) + fh_hnet_flops_head(shared, 1, 1);
  double epoch_loss = 0.0;
  fh_hetero_begin(h, tr, rng);
  for (int e = 0; e < h->tr.epochs; e++) {
    fh_hetero_shuffle(h, tr, rng);
    epoch_loss = 0.0;
    for (int b0 = 0; b0 < tr->n; b0 += h->tr.batch) {
      const int B = tr->n - b0 < h->tr.batch ? tr->n - b0 : h->tr.batch;
      fh_hetero_gather(h, tr, b0, B);
      double ce_own, ce_sh;
      if (fh_mutual_batch(m, own, shared, h->xb, h->yb, B, &ce_own, &ce_sh) != 0)
        return FH_FAIL(FH_ERR_DIVERGED, "mutual learning of %s and %s: a loss became NaN or infinite at local "
                                        "step %lld; lower hetero.lr (now %g)",
                       own->arch, shared->arch, *steps_own + 1, (double)h->tr.opt.lr);
      fh_prof_count_flops(flops * B);
      fh_hnet_clip(own, h->tr.clip);
      fh_hnet_clip(shared, h->tr.clip);
      fh_hnet_sgd_step(own, &h->tr.opt, mom_own, steps_own);
      fh_hnet_sgd_step(shared, &h->tr.opt, mom_sh, steps_sh);
      epoch_loss += ce_own * B;
    }
  }
  *last_loss = tr->n ? epoch_loss / tr->n : 0.0;
  return 0;
}

/* ---- the algorithm around it ------------------------------------------------------- */

/* fh_hetero_client_evaluate reads the state as an fh_hetero_alg */
_Static_assert(offsetof(fh_mutual_alg, h) == offsetof(fh_hetero_alg, h) && offsetof(fh_mutual_alg, f) == offsetof(fh_hetero_alg, f),
               "the hetero part leads the state");

int fh_mutual_alg_setup(fh_mutual_alg *a, fh_run *run, const char *prefix) {
  FH_TRY(fh_hetero_create(&a->h, run));
  FH_TRY(fh_hetero_declare(&a->h, run, prefix, &a->f));
  const fh_dataset *ds = run->data;
  const char *arch = fh_cfg_str(run->cfg, "model.arch");
  int rc = fh_hnet_create(&a->shared, run->cfg, arch, ds->c, ds->h, ds->w, ds->num_classes, a->h.max_batch, 1);
  if (rc) {
    fh_error_prefix("model.arch = %s (the shared model): ", arch);
    return rc;
  }
  if (a->shared.state_n != run->model_n)
    return FH_FAIL(FH_ERR_RUNTIME, "the shared model %s has %zu state floats, the run's model %zu", arch,
                   a->shared.state_n, run->model_n);
  char name[64];
  a->f_smom = -1;
  if (a->h.tr.opt.momentum > 0 && a->h.tr.keep_momentum) {
    snprintf(name, sizeof name, "%s.shared_momentum", prefix);
    FH_TRY(fh_client_store_field(run->state, name, FH_STATE_F32, a->shared.np, &a->f_smom));
  } else if (a->h.tr.opt.momentum > 0) {
    a->smom_scratch = fh_malloc(a->shared.np * sizeof(float));
  }
  snprintf(name, sizeof name, "%s.shared_steps", prefix);
  FH_TRY(fh_client_store_field(run->state, name, FH_STATE_F64, 1, &a->f_ssteps));
  fh_mutual_create(&a->mu, ds->num_classes, a->h.d == a->shared.d ? a->shared.d : 0, a->h.max_batch);
  a->state = fh_malloc(run->model_n * sizeof(float));
  return 0;
}

int fh_mutual_alg_client(fh_mutual_alg *a, fh_run *run, fh_client_ctx *c, const float *shared_state,
                         double *train_loss) {
  fh_hetero_rows r;
  fh_hnet *own = fh_hetero_acquire(&a->h, run, &a->f, c->id, 1, &r);
  fh_hnet_load(&a->shared, shared_state);
  int fresh;
  double *srow = fh_client_store_acquire(run->state, a->f_ssteps, c->id, &fresh);
  float *smom = NULL;
  long long ssteps = 0;
  if (a->f_smom >= 0) {
    smom = fh_client_store_acquire(run->state, a->f_smom, c->id, &fresh);
    ssteps = (long long)srow[0];
  } else if (a->smom_scratch) {
    smom = memset(a->smom_scratch, 0, a->shared.np * sizeof(float));
  }
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = fh_mutual_train(&a->mu, &a->h, own, &a->shared, &c->data->train, &rng, r.mom, &r.steps, smom, &ssteps,
                           train_loss);
  if (rc == 0) {
    fh_hnet_store(&a->shared, a->state);
    srow[0] = (double)ssteps;
  }
  int rr = fh_hetero_release(&a->h, run, &a->f, c->id, rc == 0, &r);
  int r2 = fh_client_store_release(run->state, a->f_ssteps, c->id, rc == 0);
  if (rr == 0) rr = r2;
  if (a->f_smom >= 0) {
    r2 = fh_client_store_release(run->state, a->f_smom, c->id, rc == 0);
    if (rr == 0) rr = r2;
  }
  FH_TRY(rc);
  return rr;
}

void fh_mutual_alg_destroy(fh_mutual_alg *a) {
  fh_hetero_destroy(&a->h);
  fh_hnet_destroy(&a->shared);
  fh_mutual_destroy(&a->mu);
  free(a->smom_scratch);
  free(a->state);
  memset(a, 0, sizeof *a);
}
