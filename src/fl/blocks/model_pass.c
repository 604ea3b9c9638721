/* The model as extractor + classifier (see model_pass.h). Layout: the
 * extractor's parameters are the model's first head_off floats and its
 * buffers all of the model's (fh_model_create_extractor), the classifier's
 * weight [C, d] and bias [C] follow at head_off. A model of one Linear layer
 * has no extractor: its features are its input. */
#include "fl/blocks/model_pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/layer.h"

struct fh_model_pass {
  fh_model *m;
  fh_model *ex;          /* the layers before the classifier; NULL: none */
  int max_batch, d, C;
  size_t head_off;       /* offset of the classifier's weight in m's parameters */
  float *z;              /* [max_batch, C] logits of the last forward           */
  float *df;             /* [max_batch, d] gradient reaching the features       */
  const float *f;        /* features of the last forward                        */
};

int fh_model_pass_create(fh_model_pass **out, fh_model *m, int max_batch) {
  *out = NULL;
  const int nl = fh_model_nlayers(m);
  const fh_layer *head = fh_model_layer(m, nl - 1);
  if (head->kind != FH_LAYER_LINEAR || head->input != nl - 2 || head->nparams != 2)
    return FH_FAIL(FH_ERR_CONFIG, "model.arch = %s does not end in a Linear classifier with a bias reading the "
                                  "layer before it", fh_model_arch(m));
  fh_model_pass *p = fh_calloc(1, sizeof *p);
  p->m = m;
  p->max_batch = max_batch;
  p->d = (int)head->in_size;
  p->C = (int)head->out_size;
  p->head_off = fh_model_view(m, fh_model_header_first_view(m))->offset;
  if (nl > 1) {
    const int rc = fh_model_create_extractor(&p->ex, m, max_batch);
    if (rc) {
      free(p);
      return rc;
    }
  }
  p->z = fh_malloc((size_t)max_batch * p->C * sizeof(float));
  p->df = fh_malloc((size_t)max_batch * p->d * sizeof(float));
  *out = p;
  return 0;
}

void fh_model_pass_free(fh_model_pass *p) {
  if (!p) return;
  fh_model_free(p->ex);
  free(p->z);
  free(p->df);
  free(p);
}

static void check_batch(const fh_model_pass *p, int B) {
  if (B < 1 || B > p->max_batch) {
    fprintf(stderr, "fedhpc: internal error: model pass called with a batch of %d; it was created for 1 to %d\n", B,
            p->max_batch);
    abort();
  }
}

const float *fh_model_pass_forward(fh_model_pass *p, const float *x, int B, int train) {
  check_batch(p, B);
  const float *w = fh_model_params(p->m);
  if (p->ex) {
    memcpy(fh_model_params(p->ex), w, p->head_off * sizeof(float));
    const size_t nb = fh_model_nbuffers(p->m);
    if (nb) memcpy(fh_model_buffers(p->ex), fh_model_buffers(p->m), nb * sizeof(float));
    p->f = fh_model_forward(p->ex, x, B, train);
  } else {
    p->f = x;
  }
  fh_linear_forward(p->z, p->f, w + p->head_off, w + p->head_off + (size_t)p->C * p->d, B, p->d, p->C);
  return p->z;
}

const float *fh_model_pass_features(const fh_model_pass *p) { return p->f; }

fh_model *fh_model_pass_model(const fh_model_pass *p) { return p->m; }

void fh_model_pass_backward(fh_model_pass *p, const float *x, const float *dlogits, const float *dfeat, int B) {
  check_batch(p, B);
  const size_t Cd = (size_t)p->C * p->d;
  float *g = fh_model_grads(p->m);
  const float *w = fh_model_params(p->m);
  memset(g + p->head_off, 0, (Cd + (size_t)p->C) * sizeof(float)); /* the kernel accumulates */
  fh_linear_backward(p->ex ? p->df : NULL, g + p->head_off, g + p->head_off + Cd, dlogits, p->f, w + p->head_off, B,
                     p->d, p->C);
  if (!p->ex) return;
  if (dfeat)
    for (size_t i = 0; i < (size_t)B * p->d; i++) p->df[i] += dfeat[i];
  fh_model_backward(p->ex, x, p->df, B);
  memcpy(g, fh_model_grads(p->ex), p->head_off * sizeof(float));
}
