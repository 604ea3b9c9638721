/* The architectures a deck can name (model.arch) and their keys. Each builder
 * appends layers to a fresh model; the machinery is in model.c. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "nn/model_build.h"

#define FH_MLP_MAX_HIDDEN 64

const fh_key_spec fh_model_keys[] = {
    {"model.arch", FH_T_ENUM, "mlp", 0, 0, "mlp", "network architecture"},
    {"model.hidden", FH_T_INTLIST, "200,200", 1, 1000000, NULL,
     "mlp: hidden widths h1,...,hk of Linear(d,h1)-ReLU-...-Linear(hk,C); empty: softmax "
     "regression"},
    FH_KEYS_END};

int fh_model_create_mlp(fh_model **out, int d, const int *hidden, int nhidden, int num_classes,
                        int max_batch) {
  *out = NULL;
  if (d < 1 || num_classes < 1 || max_batch < 1)
    return FH_FAIL(FH_ERR_CONFIG,
                   "mlp: input size %d, classes %d and batch size %d must all be at least 1", d,
                   num_classes, max_batch);
  fh_model *m = fh_model_begin("mlp", d, 1, 1, num_classes, max_batch);
  int width = d;
  for (int k = 0; k <= nhidden; k++) {
    const int next = k < nhidden ? hidden[k] : num_classes;
    if (next < 1) {
      fh_model_free(m);
      return FH_FAIL(FH_ERR_CONFIG, "model.hidden: width %d of hidden layer %d must be at least 1",
                     next, k + 1);
    }
    char name[16];
    snprintf(name, sizeof name, "fc%d", k + 1);
    fh_model_append(m, fh_layer_linear(name, width, next));
    if (k < nhidden) {
      snprintf(name, sizeof name, "relu%d", k + 1);
      fh_model_append(m, fh_layer_relu(name, next, 1, 1));
    }
    width = next;
  }
  FH_TRY(fh_model_finish(m));
  *out = m;
  return 0;
}

int fh_model_create(fh_model **out, const fh_config *cfg, int in_c, int in_h, int in_w,
                    int num_classes, int max_batch) {
  *out = NULL;
  const char *arch = fh_cfg_str(cfg, "model.arch");
  if (strcmp(arch, "mlp") == 0) {
    long long h[FH_MLP_MAX_HIDDEN];
    const int n = fh_cfg_intlist(cfg, "model.hidden", h, FH_MLP_MAX_HIDDEN);
    if (n > FH_MLP_MAX_HIDDEN)
      return FH_FAIL(FH_ERR_CONFIG, "model.hidden lists %d hidden layers; at most %d are supported",
                     n, FH_MLP_MAX_HIDDEN);
    int hidden[FH_MLP_MAX_HIDDEN];
    for (int k = 0; k < n; k++) hidden[k] = (int)h[k]; /* the deck bounds them to [1, 1e6] */
    /* An MLP sees any sample as a flat vector. */
    const long long d = (long long)in_c * in_h * in_w;
    if (d > 1000000000LL)
      return FH_FAIL(FH_ERR_CONFIG, "mlp: samples of %lld features are too large for an MLP", d);
    return fh_model_create_mlp(out, (int)d, hidden, n, num_classes, max_batch);
  }
  return FH_FAIL(FH_ERR_CONFIG, "model.arch: unknown architecture '%s' (choices: mlp)", arch);
}
