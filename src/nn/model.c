/* The model machinery common to every architecture: the layer chain, the flat
 * parameter / gradient / buffer storage with named views, the activation
 * workspace, and the forward, loss-and-backward and evaluation drivers. The
 * architectures themselves are assembled in zoo.c. */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "nn/layer.h"
#include "nn/loss.h"
#include "nn/model_build.h"

struct fh_model {
  char arch[32];
  int in_shape[3];
  size_t in_size;
  int num_classes;
  int max_batch;

  int nlayers, cap_layers;
  fh_layer *layers; /* forward order; layer i reads layers[i].input */

  int nviews;
  fh_param_view *views; /* trainable tensors in layer order */
  size_t nparams;
  float *params, *grads;

  int nbuf_views;
  fh_param_view *buf_views;
  size_t nbuffers;
  float *buffers;

  /* One allocation, sized for max_batch at finish time. For layer i:
   * act[i] [max_batch, out_size] its output, dact[i] the gradient of the loss
   * with respect to it, scratch[i] its private scratch. probs [max_batch, C]
   * holds the softmax of the last output for the loss backward. */
  float *workspace;
  float **act, **dact, **scratch;
  float *probs;

  /* Summing the gradients of an output with several readers: acc[2 i + s]
   * is 1 when input slot s (0: input, 1: input2) of layer i is not the first
   * reader the backward meets, so its dx goes to dtmp[s] [max_batch,
   * in_size] and is added in, rather than overwriting. */
  unsigned char *acc;
  float *dtmp[2];
  /* d(loss)/d(x) [max_batch, in_size] when asked for (fh_model_set_input_grad). */
  int want_dinput;
  float *dinput;
  int last_train; /* the mode of the last forward, which the backward follows */
  int last_infer; /* the last forward was fh_model_infer: nothing to go back on */

  /* fh_model_infer's plan (infer_plan): layers [0, infer_split) run in pieces
   * of infer_piece rows, the rest on the whole batch; infer_fold[i] = 1 when
   * layer i is a ReLU that the next layer takes into its infer_relu. */
  int infer_split, infer_piece;
  unsigned char *infer_fold;

  int *view_layer; /* [nviews]: the layer that owns each trainable view */

  fh_rng *rng;
};

void fh_view_set(fh_param_view *v, const char *layer, const char *suffix, int ndim,
                 const int *shape) {
  assert(ndim >= 1 && ndim <= FH_MAX_DIMS);
  snprintf(v->name, sizeof v->name, "%s.%s", layer, suffix);
  v->offset = 0;
  v->ndim = ndim;
  v->numel = 1;
  for (int d = 0; d < FH_MAX_DIMS; d++) {
    v->shape[d] = d < ndim ? shape[d] : 1;
    if (d < ndim) v->numel *= (size_t)shape[d];
  }
}

/* ---- assembling ----------------------------------------------------------- */

fh_model *fh_model_begin(const char *arch, int in_c, int in_h, int in_w, int num_classes,
                         int max_batch) {
  fh_model *m = fh_calloc(1, sizeof *m);
  snprintf(m->arch, sizeof m->arch, "%s", arch);
  m->in_shape[0] = in_c, m->in_shape[1] = in_h, m->in_shape[2] = in_w;
  m->in_size = (size_t)in_c * in_h * in_w;
  m->num_classes = num_classes;
  m->max_batch = max_batch;
  return m;
}

void fh_model_out_shape(const fh_model *m, int shape[3]) {
  const int *s = m->nlayers > 0 ? m->layers[m->nlayers - 1].out_shape : m->in_shape;
  shape[0] = s[0], shape[1] = s[1], shape[2] = s[2];
}

/* Per-sample shape of the output of layer src, or of the model input. */
static const int *src_shape(const fh_model *m, int src) {
  return src == FH_LAYER_MODEL_INPUT ? m->in_shape : m->layers[src].out_shape;
}

static void check_source(const fh_model *m, const fh_layer *L, int src) {
  if (src < FH_LAYER_MODEL_INPUT || src >= m->nlayers) {
    fprintf(stderr, "fedhpc: internal error: layer '%s' reads layer %d of %d\n", L->name, src,
            m->nlayers);
    abort();
  }
  const int *prev = src_shape(m, src);
  if (prev[0] != L->in_shape[0] || prev[1] != L->in_shape[1] || prev[2] != L->in_shape[2]) {
    fprintf(stderr,
            "fedhpc: internal error: layer '%s' (%s) expects input [%d, %d, %d] but the "
            "output of %s is [%d, %d, %d]\n",
            L->name, L->ops->kind_name, L->in_shape[0], L->in_shape[1], L->in_shape[2],
            src == FH_LAYER_MODEL_INPUT ? "the model input" : m->layers[src].name, prev[0],
            prev[1], prev[2]);
    abort();
  }
}

static int push_layer(fh_model *m, fh_layer L) {
  if (m->nlayers == m->cap_layers) {
    m->cap_layers = m->cap_layers ? 2 * m->cap_layers : 8;
    fh_layer *grown = fh_malloc((size_t)m->cap_layers * sizeof *grown);
    if (m->nlayers) memcpy(grown, m->layers, (size_t)m->nlayers * sizeof *grown);
    free(m->layers);
    m->layers = grown;
  }
  m->layers[m->nlayers] = L;
  return m->nlayers++;
}

int fh_model_append_from(fh_model *m, fh_layer L, int src) {
  check_source(m, &L, src);
  L.input = src;
  L.input2 = FH_LAYER_NO_INPUT;
  return push_layer(m, L);
}

int fh_model_append_join(fh_model *m, fh_layer L, int src, int src2) {
  check_source(m, &L, src);
  check_source(m, &L, src2);
  L.input = src;
  L.input2 = src2;
  return push_layer(m, L);
}

void fh_model_append(fh_model *m, fh_layer L) { fh_model_append_from(m, L, m->nlayers - 1); }

/* A ReLU that is the only reader of a BatchNorm's or an Add's output runs
 * inside that layer (fh_layer.fused_relu): one pass over the activations
 * instead of two, forward and backward. The ReLU keeps its place in the list
 * (names, summaries, timing tables), shares its input's output and gradient
 * buffers, and the passes skip it. */
static void fuse_relus(fh_model *m) {
  int *readers = fh_calloc((size_t)m->nlayers, sizeof(int));
  for (int i = 0; i < m->nlayers; i++) {
    m->layers[i].fused_relu = 0; /* an extractor copies finished layers */
    if (m->layers[i].input >= 0) readers[m->layers[i].input]++;
    if (m->layers[i].input2 >= 0) readers[m->layers[i].input2]++;
  }
  for (int i = 0; i < m->nlayers; i++) {
    fh_layer *L = &m->layers[i];
    if (L->kind != FH_LAYER_RELU || L->input < 0 || readers[L->input] != 1) continue;
    fh_layer *in = &m->layers[L->input];
    if (in->kind == FH_LAYER_BATCHNORM2D || in->kind == FH_LAYER_BATCHNORM1D ||
        in->kind == FH_LAYER_ADD)
      L->fused_relu = in->fused_relu = 1;
  }
  free(readers);
}

static int skipped(const fh_layer *L) { return L->kind == FH_LAYER_RELU && L->fused_relu; }

/* Floats that the widest layer of a piece reads and writes in
 * fh_model_infer: 1 MiB, half the L2 cache of the cores this was measured on
 * (2 MiB; the rest holds oneDNN's blocked copies and the weights), so a
 * piece's maps pass from layer to layer in the cache instead of through
 * memory. */
#define INFER_PIECE_FLOATS (256 * 1024)

/* How fh_model_infer walks the model; a function of the layers alone, so
 * every rank runs the same products on the same rows.
 *   The prefix: the leading layers whose outputs are maps (more than one
 * position), cut where no later layer reads inside it (a residual join
 * reaching back), run piece by piece: their per-row activations are large,
 * and rows do not mix in evaluation mode. The rest (flatten and the dense
 * head, whose products want the whole batch to reuse their weights) runs on
 * the whole batch, as the forward does.
 *   Folds: a ReLU whose only reader is the next layer, in the same part,
 * offering infer_relu (max pooling). */
static void infer_plan(fh_model *m) {
  const int n = m->nlayers;
  int k = 0;
  while (k < n && m->layers[k].out_shape[1] * m->layers[k].out_shape[2] > 1) k++;
  for (int cut = 0; !cut && k > 0;) {
    cut = 1;
    for (int j = k; j < n; j++) {
      const int srcs[2] = {m->layers[j].input, m->layers[j].input2};
      for (int s = 0; s < 2; s++)
        if (srcs[s] >= 0 && srcs[s] < k - 1) cut = 0;
    }
    if (!cut) k--;
  }
  /* A fused ReLU shares its input's buffer (fuse_relus), and the prefix's
   * layers write each piece at the buffer's start except the last, which
   * writes the piece's rows of the whole batch: end the prefix at the ReLU's
   * input, which applies the ReLU itself, so that the next piece cannot
   * overwrite the rows of the first. */
  while (k > 0 && skipped(&m->layers[k - 1])) k--;
  if (k < 2) k = 0; /* one layer in pieces gains nothing */
  m->infer_fold = fh_calloc((size_t)n, 1);
  int *readers = fh_calloc((size_t)n + 1, sizeof(int));
  for (int j = 0; j < n; j++) {
    if (m->layers[j].input >= 0) readers[m->layers[j].input]++;
    if (m->layers[j].input2 >= 0) readers[m->layers[j].input2]++;
  }
  for (int i = 0; i + 1 < n; i++) {
    const fh_layer *L = &m->layers[i], *next = &m->layers[i + 1];
    m->infer_fold[i] = L->kind == FH_LAYER_RELU && readers[i] == 1 && next->input == i &&
                       next->input2 == FH_LAYER_NO_INPUT && next->ops->infer_relu &&
                       (i + 1 < k || i >= k);
  }
  free(readers);
  size_t widest = 1; /* of the layers that run (a folded ReLU does not) */
  for (int i = 0; i < k; i++)
    if (!m->infer_fold[i] && m->layers[i].in_size + m->layers[i].out_size > widest)
      widest = m->layers[i].in_size + m->layers[i].out_size;
  size_t piece = INFER_PIECE_FLOATS / widest;
  if (piece < 1) piece = 1;
  if (piece > (size_t)m->max_batch) piece = (size_t)m->max_batch;
  m->infer_split = k;
  m->infer_piece = (int)piece;
}

/* Long on purpose: the model's layout in one pass (parameter and buffer
 * views, the payload limit, the readers of each output for backward, the
 * activation workspace), each step commented, all of them reading the same
 * running offsets. */
int fh_model_finish(fh_model *m) {
  /* Place the views: parameters and buffers in layer order, each tensor right
   * after the previous one, so the flat layout is the state_dict order. */
  size_t np = 0, nb = 0;
  int nv = 0, nbv = 0;
  for (int i = 0; i < m->nlayers; i++) {
    fh_layer *L = &m->layers[i];
    for (int k = 0; k < L->nparams; k++, nv++) {
      L->param[k].offset = np;
      np += L->param[k].numel;
    }
    for (int k = 0; k < L->nbuffers; k++, nbv++) {
      L->buffer[k].offset = nb;
      nb += L->buffer[k].numel;
    }
  }
  int last[3];
  fh_model_out_shape(m, last);
  if (m->nlayers == 0 || (size_t)last[0] * last[1] * last[2] != (size_t)m->num_classes) {
    fprintf(stderr, "fedhpc: internal error: model '%s' ends in [%d, %d, %d], not [%d]\n",
            m->arch, last[0], last[1], last[2], m->num_classes);
    abort();
  }
  /* Payloads travel in MPI calls whose counts are int. */
  if (np > (size_t)INT_MAX || nb > (size_t)INT_MAX) {
    int rc = FH_FAIL(FH_ERR_CONFIG,
                     "model '%s' would have %zu parameters, more than the %d a flat payload "
                     "can carry; make the model smaller (model.hidden)",
                     m->arch, np, INT_MAX);
    fh_model_free(m);
    return rc;
  }
  m->nparams = np;
  m->nbuffers = nb;
  m->nviews = nv;
  m->nbuf_views = nbv;
  m->views = fh_malloc((size_t)(nv ? nv : 1) * sizeof *m->views);
  m->view_layer = fh_malloc((size_t)(nv ? nv : 1) * sizeof *m->view_layer);
  m->buf_views = fh_malloc((size_t)(nbv ? nbv : 1) * sizeof *m->buf_views);
  nv = nbv = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    for (int k = 0; k < L->nparams; k++) m->view_layer[nv] = i, m->views[nv++] = L->param[k];
    for (int k = 0; k < L->nbuffers; k++) m->buf_views[nbv++] = L->buffer[k];
  }

  /* Readers of each output, met in backward order (last layer first, input
   * before input2): the first overwrites the gradient, the others add to it.
   * Index nlayers stands for the model input. */
  m->acc = fh_calloc(2 * (size_t)m->nlayers, 1);
  unsigned char *seen = fh_calloc((size_t)m->nlayers + 1, 1);
  size_t tmp_floats[2] = {0, 0};
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const fh_layer *L = &m->layers[i];
    const int srcs[2] = {L->input, L->input2};
    for (int s = 0; s < 2; s++) {
      if (srcs[s] == FH_LAYER_NO_INPUT) continue;
      const int a = srcs[s] == FH_LAYER_MODEL_INPUT ? m->nlayers : srcs[s];
      m->acc[2 * i + s] = seen[a];
      seen[a] = 1;
      if (m->acc[2 * i + s] && L->in_size > tmp_floats[s]) tmp_floats[s] = L->in_size;
    }
  }
  free(seen);
  m->params = fh_calloc(np ? np : 1, sizeof(float));
  m->grads = fh_calloc(np ? np : 1, sizeof(float));
  m->buffers = fh_calloc(nb ? nb : 1, sizeof(float));

  /* Activation workspace, once, for max_batch; a fused ReLU has none. */
  fuse_relus(m);
  const size_t mb = (size_t)m->max_batch;
  size_t total = mb * ((size_t)m->num_classes + tmp_floats[0] + tmp_floats[1] + m->in_size);
  for (int i = 0; i < m->nlayers; i++)
    total += mb * ((skipped(&m->layers[i]) ? 0 : 2 * m->layers[i].out_size) +
                   m->layers[i].scratch_per_sample) +
             m->layers[i].scratch_fixed;
  m->workspace = fh_calloc(total, sizeof(float));
  m->act = fh_malloc((size_t)m->nlayers * sizeof(float *));
  m->dact = fh_malloc((size_t)m->nlayers * sizeof(float *));
  m->scratch = fh_malloc((size_t)m->nlayers * sizeof(float *));
  float *w = m->workspace;
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    if (skipped(L)) {
      m->act[i] = m->act[L->input], m->dact[i] = m->dact[L->input];
    } else {
      m->act[i] = w, w += mb * L->out_size;
      m->dact[i] = w, w += mb * L->out_size;
    }
    const size_t scratch = L->scratch_fixed + mb * L->scratch_per_sample;
    m->scratch[i] = scratch ? w : NULL, w += scratch;
  }
  m->probs = w, w += mb * (size_t)m->num_classes;
  m->dtmp[0] = w, w += mb * tmp_floats[0];
  m->dtmp[1] = w, w += mb * tmp_floats[1];
  m->dinput = w;
  infer_plan(m);
  return 0;
}

void fh_model_free(fh_model *m) {
  if (!m) return;
  free(m->layers);
  free(m->views);
  free(m->buf_views);
  free(m->params);
  free(m->grads);
  free(m->buffers);
  free(m->workspace);
  free(m->act);
  free(m->dact);
  free(m->scratch);
  free(m->acc);
  free(m->infer_fold);
  free(m->view_layer);
  free(m);
}

/* ---- initialisation and accessors ------------------------------------------ */

/* nn.init.trunc_normal_(std, a, b): N(0, std^2) redrawn until it falls in
 * [a, b] (the bounds are absolute, as PyTorch's). */
static void trunc_normal_fill(float *p, size_t n, float std, float lo, float hi, fh_rng *r) {
  for (size_t i = 0; i < n; i++) {
    double v;
    int tries = 0;
    do v = fh_rng_normal(r) * std;
    while ((v < lo || v > hi) && ++tries < 1000);
    p[i] = (float)(v < lo ? lo : v > hi ? hi : v);
  }
}

/* The weight (param[0]) and bias (param[1], if any) of a conv or linear layer
 * initialised by the kinds the layer's own init op does not know. */
static void init_weight_bias(const fh_layer *L, float *params, fh_rng *r) {
  const fh_param_view *w = &L->param[0];
  if (L->init_kind == FH_INIT_TRUNC_NORMAL) {
    trunc_normal_fill(params + w->offset, w->numel, L->init_arg[0], L->init_arg[1],
                      L->init_arg[2], r);
    if (L->nparams > 1) { /* PyTorch's default bias: U(-1/sqrt(fan_in), +) */
      const double bound = 1.0 / sqrt((double)L->fan_in);
      float *b = params + L->param[1].offset;
      for (size_t i = 0; i < L->param[1].numel; i++)
        b[i] = (float)((2.0 * fh_rng_uniform(r) - 1.0) * bound);
    }
  } else if (L->init_kind == FH_INIT_NORMAL) {
    fh_rng_normal_fill(r, params + w->offset, w->numel, 0.0f, L->init_arg[0]);
    if (L->nparams > 1)
      memset(params + L->param[1].offset, 0, L->param[1].numel * sizeof(float));
  } else { /* FH_INIT_KAIMING_FAN_OUT_ALL */
    const double fan_out = (double)w->numel / (w->ndim > 1 ? w->shape[1] : 1);
    fh_rng_normal_fill(r, params + w->offset, w->numel, 0.0f, (float)sqrt(2.0 / fan_out));
    if (L->nparams > 1)
      memset(params + L->param[1].offset, 0, L->param[1].numel * sizeof(float));
  }
}

void fh_model_init(fh_model *m, fh_rng *r) {
  /* Layer order = view order, and each layer draws its tensors in view order,
   * element by element: the same stream gives the same model anywhere. */
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    if ((L->init_kind == FH_INIT_TRUNC_NORMAL || L->init_kind == FH_INIT_KAIMING_FAN_OUT_ALL ||
         L->init_kind == FH_INIT_NORMAL) &&
        L->nparams > 0)
      init_weight_bias(L, m->params, r);
    else if (L->ops->init)
      L->ops->init(L, m->params, m->buffers, r);
    if (L->bias_const && L->nparams > 1) {
      float *b = m->params + L->param[1].offset;
      for (size_t k = 0; k < L->param[1].numel; k++) b[k] = L->bias_value;
    }
  }
}

size_t fh_model_nparams(const fh_model *m) { return m->nparams; }
float *fh_model_params(fh_model *m) { return m->params; }
float *fh_model_grads(fh_model *m) { return m->grads; }
int fh_model_nviews(const fh_model *m) { return m->nviews; }
const fh_param_view *fh_model_view(const fh_model *m, int i) {
  return i >= 0 && i < m->nviews ? &m->views[i] : NULL;
}
const char *fh_model_arch(const fh_model *m) { return m->arch; }
int fh_model_num_classes(const fh_model *m) { return m->num_classes; }
int fh_model_max_batch(const fh_model *m) { return m->max_batch; }
size_t fh_model_input_size(const fh_model *m) { return m->in_size; }

const fh_param_view *fh_model_find_view(const fh_model *m, const char *name) {
  for (int i = 0; i < m->nviews; i++)
    if (strcmp(m->views[i].name, name) == 0) return &m->views[i];
  return NULL;
}

size_t fh_model_nbuffers(const fh_model *m) { return m->nbuffers; }
float *fh_model_buffers(fh_model *m) { return m->buffers; }
const float *fh_model_buffers_ro(const fh_model *m) { return m->buffers; }
int fh_model_nbuffer_views(const fh_model *m) { return m->nbuf_views; }
const fh_param_view *fh_model_buffer_view(const fh_model *m, int i) {
  return i >= 0 && i < m->nbuf_views ? &m->buf_views[i] : NULL;
}

void fh_model_set_rng(fh_model *m, fh_rng *r) { m->rng = r; }

int fh_model_view_layer(const fh_model *m, int i) {
  return i >= 0 && i < m->nviews ? m->view_layer[i] : -1;
}

int fh_model_view_is_middle(const fh_model *m, int i) {
  if (i < 0 || i >= m->nviews) return 0;
  const fh_layer *L = &m->layers[m->view_layer[i]];
  /* The weight is a layer's first view; a conv's bias never counts. */
  return L->middle && strcmp(m->views[i].name, L->param[0].name) == 0;
}
int fh_model_nlayers(const fh_model *m) { return m->nlayers; }
const fh_layer *fh_model_layer(const fh_model *m, int i) {
  return i >= 0 && i < m->nlayers ? &m->layers[i] : NULL;
}

/* snprintf that appends at *used and keeps counting past cap. */
static void appendf(char *buf, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t cap, size_t *used, const char *fmt, ...) {
  char dummy[1];
  va_list ap;
  va_start(ap, fmt);
  int n = *used < cap ? vsnprintf(buf + *used, cap - *used, fmt, ap)
                      : vsnprintf(dummy, 0, fmt, ap);
  va_end(ap);
  if (n > 0) *used += (size_t)n;
}

int fh_model_summary(const fh_model *m, char *buf, size_t cap) {
  size_t used = 0;
  appendf(buf, cap, &used, "%s: [%d, %d, %d]", m->arch, m->in_shape[0], m->in_shape[1],
          m->in_shape[2]);
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    char one[96];
    if (L->ops->describe)
      L->ops->describe(L, one, sizeof one);
    else
      snprintf(one, sizeof one, "%s", L->ops->kind_name);
    appendf(buf, cap, &used, " %s", one);
  }
  appendf(buf, cap, &used, " -> [%d], %zu parameters", m->num_classes, m->nparams);
  return (int)used;
}

static void shape_str(char *buf, size_t cap, int ndim, const int *shape) {
  size_t used = 0;
  appendf(buf, cap, &used, "[");
  for (int d = 0; d < ndim; d++) appendf(buf, cap, &used, d ? ", %d" : "%d", shape[d]);
  appendf(buf, cap, &used, "]");
}

void fh_model_print_table(const fh_model *m, FILE *f, int B) {
  char shape[64], reads[32], module[128];
  fprintf(f, "%s: input [%d, %d, %d], %d classes, %zu parameters, %zu buffer floats\n", m->arch,
          m->in_shape[0], m->in_shape[1], m->in_shape[2], m->num_classes, m->nparams,
          m->nbuffers);
  fprintf(f, "  %3s  %-22s %-8s %-16s %11s %11s  %s\n", "#", "layer", "reads", "output",
          "fwd MFLOP", "bwd MFLOP", "module");
  int v = 0, nmiddle = 0;
  size_t middle_numel = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    if (L->ops->describe)
      L->ops->describe(L, module, sizeof module);
    else
      snprintf(module, sizeof module, "%s", L->ops->kind_name);
    if (L->input2 != FH_LAYER_NO_INPUT)
      snprintf(reads, sizeof reads, "%d + %d", L->input, L->input2);
    else if (L->input == FH_LAYER_MODEL_INPUT)
      snprintf(reads, sizeof reads, "input");
    else
      snprintf(reads, sizeof reads, "%d", L->input);
    shape_str(shape, sizeof shape, 3, L->out_shape);
    fprintf(f, "  %3d  %-22s %-8s %-16s %11.3f %11.3f  %s\n", i, L->name, reads, shape,
            L->ops->flops_forward(L, B) * 1e-6, L->ops->flops_backward(L, B) * 1e-6, module);
    for (int k = 0; k < L->nparams; k++, v++) {
      const fh_param_view *pv = &m->views[v];
      const int mid = fh_model_view_is_middle(m, v);
      nmiddle += mid;
      if (mid) middle_numel += pv->numel;
      shape_str(shape, sizeof shape, pv->ndim, pv->shape);
      fprintf(f, "       param  %-36s %-18s offset %9zu  numel %8zu%s\n", pv->name, shape,
              pv->offset, pv->numel, mid ? "  middle" : "");
    }
    for (int k = 0; k < L->nbuffers; k++) {
      const fh_param_view *bv = &L->buffer[k];
      shape_str(shape, sizeof shape, bv->ndim, bv->shape);
      fprintf(f, "       buffer %-36s %-18s offset %9zu  numel %8zu\n", bv->name, shape,
              bv->offset, bv->numel);
    }
  }
  fprintf(f, "  total: %d layers, %d parameter views (%d middle, %zu floats), %zu parameters, "
             "%zu buffer floats; batch %d: forward %.3f GFLOP, backward %.3f GFLOP\n",
          m->nlayers, m->nviews, nmiddle, middle_numel, m->nparams, m->nbuffers, B,
          fh_model_flops_forward(m, B) * 1e-9, fh_model_flops_backward(m, B) * 1e-9);
}

/* ---- passes ------------------------------------------------------------------ */

static fh_layer_ctx layer_ctx(const fh_model *m, int i, int train) {
  fh_layer_ctx c = {m->params, m->grads, m->buffers, m->scratch[i], m->rng, train, NULL, NULL};
  return c;
}

/* This thread's CPU seconds: the layers run on the calling thread (sgemm and
 * oneDNN with one thread each), and CPU time leaves out the time a loaded
 * machine kept the process waiting. */
static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The output of layer src, or the model input x. */
static const float *source(const fh_model *m, const float *x, int src) {
  return src == FH_LAYER_MODEL_INPUT ? x : m->act[src];
}

/* t [nlayers] (NULL: untimed) receives each layer's seconds. */
static const float *forward_pass(fh_model *m, const float *x, int B, int train, double *t) {
  m->last_train = train != 0;
  m->last_infer = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const fh_layer *L = &m->layers[i];
    fh_layer_ctx c = layer_ctx(m, i, train);
    if (L->input2 != FH_LAYER_NO_INPUT) c.x2 = source(m, x, L->input2);
    if (skipped(L)) { /* inside its input (fuse_relus) */
      if (t) t[i] = 0.0;
      continue;
    }
    const double t0 = t ? seconds() : 0.0;
    L->ops->forward(L, &c, source(m, x, L->input), m->act[i], B);
    if (t) t[i] = seconds() - t0;
  }
  return m->act[m->nlayers - 1];
}

/* Where slot s (0: input, 1: input2) of layer i puts its dx: the gradient of
 * its source, or dtmp[s] when another reader already wrote that (then added
 * in by add_back); NULL for the model input unless its gradient is wanted. */
static float *dx_target(fh_model *m, int i, int s, int src) {
  if (src == FH_LAYER_NO_INPUT) return NULL;
  if (src == FH_LAYER_MODEL_INPUT && !m->want_dinput) return NULL;
  if (m->acc[2 * i + s]) return m->dtmp[s];
  return src == FH_LAYER_MODEL_INPUT ? m->dinput : m->dact[src];
}

static void add_back(fh_model *m, int i, int s, int src, int B) {
  if (!m->acc[2 * i + s] || (src == FH_LAYER_MODEL_INPUT && !m->want_dinput)) return;
  float *d = src == FH_LAYER_MODEL_INPUT ? m->dinput : m->dact[src];
  const float *t = m->dtmp[s];
  const size_t n = (size_t)B * m->layers[i].in_size;
  for (size_t k = 0; k < n; k++) d[k] += t[k];
}

/* dact[last] holds d(loss)/d(logits); walks the layers backwards, in the
 * mode of the last forward. An output read by several layers (a residual
 * block's input) gets the sum of their dx: the first reader met overwrites,
 * the others add (acc, dtmp). */
static void backward_pass(fh_model *m, const float *x, int B, double *t) {
  if (m->last_infer) {
    fprintf(stderr, "fedhpc: internal error: a backward after fh_model_infer, which keeps no "
                    "activations; run fh_model_forward\n");
    abort();
  }
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const fh_layer *L = &m->layers[i];
    if (skipped(L)) {
      if (t) t[i] = 0.0;
      continue;
    }
    fh_layer_ctx c = layer_ctx(m, i, m->last_train);
    const int src = L->input, src2 = L->input2;
    if (src2 != FH_LAYER_NO_INPUT) {
      c.x2 = source(m, x, src2);
      c.dx2 = dx_target(m, i, 1, src2);
    }
    const double t0 = t ? seconds() : 0.0;
    L->ops->backward(L, &c, source(m, x, src), m->act[i], m->dact[i], dx_target(m, i, 0, src), B);
    add_back(m, i, 0, src, B);
    if (src2 != FH_LAYER_NO_INPUT) add_back(m, i, 1, src2, B);
    if (t) t[i] = seconds() - t0;
  }
}

/* The workspace holds max_batch rows: a larger batch is a programming error
 * that would write past it, so it stops the process in every build. */
static void check_batch(const fh_model *m, int B, const char *fn) {
  if (B < 1 || B > m->max_batch) {
    fprintf(stderr, "fedhpc: internal error: %s called with a batch of %d; the model was "
                    "created for 1 to %d\n", fn, B, m->max_batch);
    abort();
  }
}

const float *fh_model_forward(fh_model *m, const float *x, int B, int train) {
  check_batch(m, B, "fh_model_forward");
  return forward_pass(m, x, B, train, NULL);
}

static float loss_grad(fh_model *m, const float *x, const int32_t *y, int B, double *tf,
                       double *tb) {
  const int C = m->num_classes;
  const float *logits = forward_pass(m, x, B, 1, tf);
  const double loss = fh_softmax_ce_forward(m->probs, logits, y, B, C);
  fh_softmax_ce_backward(m->dact[m->nlayers - 1], m->probs, y, B, C);
  memset(m->grads, 0, m->nparams * sizeof(float)); /* the kernels accumulate */
  backward_pass(m, x, B, tb);
  return (float)loss;
}

float fh_model_loss_grad(fh_model *m, const float *x, const int32_t *y, int B) {
  check_batch(m, B, "fh_model_loss_grad");
  return loss_grad(m, x, y, B, NULL, NULL);
}

float fh_model_loss_grad_timed(fh_model *m, const float *x, const int32_t *y, int B,
                               double *t_forward, double *t_backward) {
  check_batch(m, B, "fh_model_loss_grad_timed");
  return loss_grad(m, x, y, B, t_forward, t_backward);
}

void fh_model_backward(fh_model *m, const float *x, const float *dlogits, int B) {
  check_batch(m, B, "fh_model_backward");
  memcpy(m->dact[m->nlayers - 1], dlogits, (size_t)B * m->num_classes * sizeof(float));
  memset(m->grads, 0, m->nparams * sizeof(float));
  backward_pass(m, x, B, NULL);
}

void fh_model_set_input_grad(fh_model *m, int on) { m->want_dinput = on != 0; }

const float *fh_model_input_grad(const fh_model *m) { return m->want_dinput ? m->dinput : NULL; }

/* Layers [lo, hi) of fh_model_infer on B rows whose model input is x: each
 * writes its activation, the last y_last. */
static void infer_layers(fh_model *m, const float *x, int lo, int hi, float *y_last, int B) {
  for (int i = lo; i < hi; i++) {
    const fh_layer *L = &m->layers[i];
    if (m->infer_fold[i]) continue; /* the next layer takes the ReLU of its input */
    float *y = i == hi - 1 ? y_last : m->act[i];
    if (skipped(L) && y == m->act[i]) continue; /* done inside its input (fuse_relus), in place */
    fh_layer_ctx c = layer_ctx(m, i, 0);
    if (L->input2 != FH_LAYER_NO_INPUT) c.x2 = source(m, x, L->input2);
    if (i > 0 && m->infer_fold[i - 1])
      L->ops->infer_relu(L, &c, source(m, x, m->layers[i - 1].input), y, B);
    else if (L->ops->infer)
      L->ops->infer(L, &c, source(m, x, L->input), y, B);
    else
      L->ops->forward(L, &c, source(m, x, L->input), y, B);
  }
}

const float *fh_model_infer_rows(fh_model *m, const float *x, int B, int lo, int hi) {
  check_batch(m, B, "fh_model_infer");
  m->last_train = 0;
  m->last_infer = 1;
  const int k = m->infer_split, P = m->infer_piece, n = m->nlayers;
  /* The prefix piece by piece: its activations hold one piece at a time (from
   * row 0, cache-resident), its last layer's output the whole batch. A piece
   * without a wanted row is skipped, its rows of that output zeroed; the
   * others run as they would anyway (same pieces, same positions). */
  for (int r0 = 0; r0 < B && k > 0; r0 += P) {
    const int rows = B - r0 < P ? B - r0 : P;
    const size_t out = m->layers[k - 1].out_size;
    float *y = m->act[k - 1] + (size_t)r0 * out;
    if (r0 + rows <= lo || r0 >= hi)
      memset(y, 0, (size_t)rows * out * sizeof(float));
    else
      infer_layers(m, x + (size_t)r0 * m->in_size, 0, k, y, rows);
  }
  /* The head on every row: a row of its products depends on that row alone,
   * while the kernels may depend on the batch size. */
  infer_layers(m, x, k, n, m->act[n - 1], B);
  return m->act[n - 1];
}

const float *fh_model_infer(fh_model *m, const float *x, int B) {
  return fh_model_infer_rows(m, x, B, 0, B);
}

int fh_model_evaluate(fh_model *m, const float *x, const int32_t *y, int B, double *loss_sum) {
  const int C = m->num_classes;
  int correct = 0;
  double sum = 0.0;
  /* Any B: chunks of max_batch through the workspace. */
  for (int start = 0; start < B; start += m->max_batch) {
    const int n = B - start < m->max_batch ? B - start : m->max_batch;
    const float *logits = fh_model_infer(m, x + (size_t)start * m->in_size, n);
    sum += fh_softmax_ce_forward(m->probs, logits, y + start, n, C) * n;
    for (int b = 0; b < n; b++) {
      const float *z = logits + (size_t)b * C;
      int best = 0; /* strict > keeps the lowest index on ties */
      for (int j = 1; j < C; j++)
        if (z[j] > z[best]) best = j;
      correct += best == y[start + b];
    }
  }
  if (loss_sum) *loss_sum += sum;
  return correct;
}

double fh_model_flops_forward(const fh_model *m, int B) {
  double f = 0.0;
  for (int i = 0; i < m->nlayers; i++) f += m->layers[i].ops->flops_forward(&m->layers[i], B);
  return f;
}

double fh_model_flops_backward(const fh_model *m, int B) {
  double f = 0.0;
  for (int i = 0; i < m->nlayers; i++) f += m->layers[i].ops->flops_backward(&m->layers[i], B);
  return f;
}

/* ---- extractor and header apart ------------------------------------------------ */

int fh_model_create_extractor(fh_model **out, const fh_model *m, int max_batch) {
  *out = NULL;
  if (m->nlayers < 2)
    return FH_FAIL(FH_ERR_CONFIG, "model '%s' has no feature extractor before its header", m->arch);
  char arch[sizeof m->arch];
  snprintf(arch, sizeof arch, "%.*s-ex", (int)sizeof m->arch - 4, m->arch);
  const fh_layer *last = &m->layers[m->nlayers - 2];
  const int d = (int)last->out_size;
  fh_model *e = fh_model_begin(arch, m->in_shape[0], m->in_shape[1], m->in_shape[2], d, max_batch);
  /* Same layers in the same order: fh_model_finish places the views exactly
   * where m has them, the header's being the last of m's. */
  for (int i = 0; i < m->nlayers - 1; i++) { /* with the same inputs: residual joins included */
    const fh_layer *L = &m->layers[i];
    if (L->input2 != FH_LAYER_NO_INPUT)
      fh_model_append_join(e, *L, L->input, L->input2);
    else
      fh_model_append_from(e, *L, L->input);
  }
  FH_TRY(fh_model_finish(e)); /* frees e on error */
  *out = e;
  return 0;
}
