/* Layer lists: parsing model.layers and building the model it describes
 * (grammar in netspec.h and docs/layer-lists.md). */
#include "nn/netspec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/conv2d_grouped.h"
#include "nn/dropout.h"
#include "nn/elu.h"
#include "nn/flatten.h"
#include "nn/leakyrelu.h"
#include "nn/model_build.h"
#include "nn/pool.h"

/* ---- named networks ---------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *layers;
} named_net;

static const named_net named_nets[] = {
    /* PFLlib's FedAvgCNN for MNIST-shaped inputs (in_features=1, dim=1024),
     * with its state_dict names (conv1.0, conv2.0, fc1.0, fc). */
    {"mnist_cnn",
     "conv(32,k=5,name=conv1.0) relu maxpool(2) conv(64,k=5,name=conv2.0) relu maxpool(2) "
     "flatten linear(512,name=fc1.0) relu linear(name=fc)"},
    /* McMahan et al. (2017), the MNIST CNN: two 5x5 'same' convolutions of 32
     * and 64 channels, each followed by ReLU and a 2x2 max pool, a 512-unit
     * ReLU layer and the softmax layer (1,663,370 parameters on 28x28). */
    {"mcmahan_cnn",
     "conv(32,k=5,p=same) relu maxpool(2) conv(64,k=5,p=same) relu maxpool(2) flatten "
     "linear(512) relu linear"},
    /* LeNet-5 for 28x28 digits (the first conv padded by 2, as on LeCun's
     * 32x32 frames), with ReLU and max pooling. */
    {"lenet5",
     "conv(6,k=5,p=2) relu maxpool(2) conv(16,k=5) relu maxpool(2) flatten linear(120) relu "
     "linear(84) relu linear"},
    /* AugFL's Fashion-MNIST meta-model: two 3x3 'same' convolutions with ELU
     * and 3x3/2 ceil-mode max pools, one linear layer; weights truncated
     * normal (std 0.1 within [-0.2, 0.2]), biases 0.1. */
    {"augfl_fmnist",
     "default(init=trunc:0.1:-0.2:0.2,binit=0.1) conv(32,k=3,p=same) elu maxpool(3,s=2,ceil) "
     "conv(64,k=3,p=same) elu maxpool(3,s=2,ceil) flatten linear"},
};

const char *fh_netspec_named(const char *arch) {
  for (size_t k = 0; k < sizeof named_nets / sizeof named_nets[0]; k++)
    if (strcmp(arch, named_nets[k].name) == 0) return named_nets[k].layers;
  return NULL;
}

/* ---- parsing ------------------------------------------------------------------ */

#define NS_MAX_ARGS 12
#define NS_MAX_DEPTH 4

typedef struct ns_item {
  char text[128]; /* as written, for messages: "linear(3000)"                  */
  char kind[24];
  int nargs;
  char key[NS_MAX_ARGS][16]; /* "" for a positional argument                  */
  char val[NS_MAX_ARGS][48];
  int pos; /* 1-based position in the list, residual bodies included        */
  struct ns_item *body; /* res: the layers of the block                       */
  int nbody;
} ns_item;

static void free_items(ns_item *it, int n) {
  for (int i = 0; i < n; i++) free_items(it[i].body, it[i].nbody);
  free(it);
}

static int is_word(int ch) { return isalnum(ch) || ch == '_'; }

/* Parses layers from *p until the end (depth 0) or ']' (inside a block).
 * Long on purpose: one scanning loop of the grammar, whose cursor, layer
 * position and error messages every token kind shares. */
static int parse_list(const char **p, ns_item **out, int *nout, int *pos, int depth) {
  ns_item *items = NULL;
  int n = 0, cap = 0, rc = 0;
  for (;;) {
    while (isspace((unsigned char)**p) || **p == ',' || **p == ';') (*p)++;
    if (**p == '\0') {
      if (depth > 0) rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: a residual block res[...] is not closed by ']'");
      break;
    }
    if (**p == ']') {
      if (depth == 0) {
        rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: ']' after layer %d closes no residual block", *pos);
        break;
      }
      (*p)++;
      break;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      ns_item *grown = fh_calloc((size_t)cap, sizeof *grown);
      if (n) memcpy(grown, items, (size_t)n * sizeof *grown);
      free(items);
      items = grown;
    }
    ns_item *it = &items[n++];
    memset(it, 0, sizeof *it);
    it->pos = ++*pos;
    const char *start = *p;
    size_t k = 0;
    while (is_word((unsigned char)**p)) {
      if (k + 1 < sizeof it->kind) it->kind[k++] = (char)tolower((unsigned char)**p);
      (*p)++;
    }
    if (k == 0) {
      rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d: expected a layer kind at '%.20s'", it->pos,
                   *p);
      break;
    }
    if (**p == '(') {
      (*p)++;
      for (;;) {
        while (isspace((unsigned char)**p)) (*p)++;
        if (**p == ')') {
          (*p)++;
          break;
        }
        if (it->nargs == NS_MAX_ARGS) {
          rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: more than %d arguments", it->pos,
                       it->kind, NS_MAX_ARGS);
          break;
        }
        char word[64];
        size_t w = 0;
        while (**p && **p != ',' && **p != ')' && **p != '(' && **p != '[' && **p != ']') {
          if (!isspace((unsigned char)**p) && w + 1 < sizeof word) word[w++] = **p;
          (*p)++;
        }
        word[w] = '\0';
        if (**p != ',' && **p != ')') {
          rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: its argument list is not closed by ')'",
                       it->pos, it->kind);
          break;
        }
        if (**p == ',') (*p)++;
        if (w == 0) {
          rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: an empty argument", it->pos, it->kind);
          break;
        }
        char *eq = strchr(word, '=');
        const int a = it->nargs++;
        if (eq) {
          *eq = '\0';
          if (strlen(word) >= sizeof it->key[a] || strlen(eq + 1) >= sizeof it->val[a]) {
            rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: argument '%s=%s' is too long",
                         it->pos, it->kind, word, eq + 1);
            break;
          }
          memcpy(it->key[a], word, strlen(word) + 1);
          memcpy(it->val[a], eq + 1, strlen(eq + 1) + 1);
        } else {
          if (strlen(word) >= sizeof it->val[a]) {
            rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: argument '%s' is too long",
                         it->pos, it->kind, word);
            break;
          }
          memcpy(it->val[a], word, strlen(word) + 1);
        }
      }
      if (rc) break;
    }
    snprintf(it->text, sizeof it->text, "%.*s", (int)(*p - start), start);
    if (**p == '[') {
      if (strcmp(it->kind, "res") != 0) {
        rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: only res takes a block [...]", it->pos,
                     it->text);
        break;
      }
      if (depth + 1 > NS_MAX_DEPTH) {
        rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d: residual blocks nest deeper than %d",
                     it->pos, NS_MAX_DEPTH);
        break;
      }
      (*p)++;
      rc = parse_list(p, &it->body, &it->nbody, pos, depth + 1);
      if (rc) break;
    } else if (strcmp(it->kind, "res") == 0) {
      rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: layer %d %s: a residual block needs its layers in [...]",
                   it->pos, it->text);
      break;
    }
  }
  if (rc) {
    free_items(items, n);
    return rc;
  }
  *out = items;
  *nout = n;
  return 0;
}

/* ---- building ------------------------------------------------------------------ */

typedef struct {
  int conv, fc, bn, relu, pool, elu, lrelu, drop, flat, res;
} ns_counters;

typedef struct {
  fh_init_kind init;
  float arg[3];
  int bias_const;
  float bias_value;
} ns_init;

typedef struct {
  fh_model *m;
  int src;      /* the layer whose output the next layer reads              */
  int shape[3]; /* and its per-sample shape                                */
  ns_init dflt; /* default(...)                                             */
  int in_res;   /* inside a residual block: convs are LIPS middle layers    */
  int num_classes;
} ns_state;

/* "layer 7 linear(3000)" prefix for messages. */
#define AT(it) "model.layers: layer %d %s: "
#define ATA(it) (it)->pos, (it)->text

static const char *arg_str(const ns_item *it, const char *key) {
  for (int a = 0; a < it->nargs; a++)
    if (strcmp(it->key[a], key) == 0) return it->val[a];
  return NULL;
}

/* The n-th positional argument (0-based), or NULL. */
static const char *arg_pos(const ns_item *it, int n) {
  for (int a = 0; a < it->nargs; a++)
    if (it->key[a][0] == '\0' && !(strcmp(it->val[a], "ceil") == 0) && n-- == 0) return it->val[a];
  return NULL;
}

static int npos(const ns_item *it) {
  int n = 0;
  while (arg_pos(it, n)) n++;
  return n;
}

/* Refuses keys the kind does not take; allowed is "k,s,p" style. */
static int check_keys(const ns_item *it, const char *allowed, int max_pos) {
  for (int a = 0; a < it->nargs; a++) {
    if (it->key[a][0] == '\0') {
      if (strcmp(it->val[a], "ceil") == 0 && !strstr(allowed, "ceil"))
        return FH_FAIL(FH_ERR_CONFIG, AT(it) "'ceil' applies to maxpool and avgpool only", ATA(it));
      continue;
    }
    char pat[24];
    snprintf(pat, sizeof pat, ",%s,", it->key[a]);
    char all[256];
    snprintf(all, sizeof all, ",%s,name,", allowed);
    if (!strstr(all, pat))
      return FH_FAIL(FH_ERR_CONFIG, AT(it) "unknown option '%s' (this layer takes: %s)", ATA(it),
                     it->key[a], allowed[0] ? allowed : "name");
  }
  const int np = npos(it);
  if (np > max_pos)
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "%d positional arguments; at most %d", ATA(it), np, max_pos);
  return 0;
}

static int parse_int(const ns_item *it, const char *what, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  const long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "%s = '%s' must be an integer in [%d, %d]", ATA(it), what, s,
                   lo, hi);
  *out = (int)v;
  return 0;
}

static int parse_real(const ns_item *it, const char *what, const char *s, double lo, double hi,
                      float *out) {
  char *end;
  errno = 0;
  const double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi))
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "%s = '%s' must be a number in [%g, %g]", ATA(it), what, s,
                   lo, hi);
  *out = (float)v;
  return 0;
}

/* Integer option key (or the n-th positional when pos >= 0), default dflt. */
static int opt_int(const ns_item *it, const char *key, const char *alt, int pos, int dflt, int lo,
                   int hi, int *out) {
  const char *s = arg_str(it, key);
  if (!s && alt) s = arg_str(it, alt);
  if (!s && pos >= 0) s = arg_pos(it, pos);
  if (!s) {
    *out = dflt;
    return 0;
  }
  return parse_int(it, key, s, lo, hi, out);
}

static int opt_bool(const ns_item *it, const char *key, int dflt, int *out) {
  const char *s = arg_str(it, key);
  for (int a = 0; a < it->nargs; a++)
    if (it->key[a][0] == '\0' && strcmp(it->val[a], key) == 0) s = "1"; /* a bare flag: ceil */
  if (!s) {
    *out = dflt;
    return 0;
  }
  if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes")) *out = 1;
  else if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no")) *out = 0;
  else return FH_FAIL(FH_ERR_CONFIG, AT(it) "%s = '%s' must be 0 or 1", ATA(it), key, s);
  return 0;
}

/* init=torch|kaiming|trunc:STD:LO:HI and binit=VALUE over the defaults. */
static int parse_init(const ns_item *it, const ns_init *dflt, ns_init *out) {
  *out = *dflt;
  const char *s = arg_str(it, "init");
  if (s) {
    if (strcmp(s, "torch") == 0) {
      out->init = FH_INIT_TORCH_DEFAULT;
    } else if (strcmp(s, "kaiming") == 0) {
      out->init = FH_INIT_KAIMING_FAN_OUT;
    } else if (strncmp(s, "normal:", 7) == 0) {
      double std;
      char tail;
      if (sscanf(s + 7, "%lf%c", &std, &tail) != 1 || !(std > 0))
        return FH_FAIL(FH_ERR_CONFIG, AT(it) "init = '%s': expected normal:STD with STD > 0",
                       ATA(it), s);
      out->init = FH_INIT_NORMAL;
      out->arg[0] = (float)std;
    } else if (strncmp(s, "trunc:", 6) == 0) {
      double std, lo, hi;
      char tail;
      if (sscanf(s + 6, "%lf:%lf:%lf%c", &std, &lo, &hi, &tail) != 3 || !(std > 0) || !(lo < hi))
        return FH_FAIL(FH_ERR_CONFIG,
                       AT(it) "init = '%s': expected trunc:STD:LO:HI with STD > 0 and LO < HI, "
                              "e.g. trunc:0.1:-0.2:0.2",
                       ATA(it), s);
      out->init = FH_INIT_TRUNC_NORMAL;
      out->arg[0] = (float)std, out->arg[1] = (float)lo, out->arg[2] = (float)hi;
    } else {
      return FH_FAIL(FH_ERR_CONFIG,
                     AT(it) "init = '%s': choose torch, kaiming, normal:STD or trunc:STD:LO:HI",
                     ATA(it), s);
    }
  }
  s = arg_str(it, "binit");
  if (s) {
    FH_TRY(parse_real(it, "binit", s, -1e30, 1e30, &out->bias_value));
    out->bias_const = 1;
  }
  return 0;
}

static void apply_init(fh_layer *L, const ns_init *in) {
  fh_init_kind k = in->init;
  /* Linear layers know the generic fan-out form only. */
  if (k == FH_INIT_KAIMING_FAN_OUT && L->kind == FH_LAYER_LINEAR) k = FH_INIT_KAIMING_FAN_OUT_ALL;
  L->init_kind = k;
  memcpy(L->init_arg, in->arg, sizeof L->init_arg);
  L->bias_const = in->bias_const;
  L->bias_value = in->bias_value;
}

/* The layer's name: name=..., or the kind's counter, under the block prefix. */
static int layer_name(char *buf, size_t cap, const ns_item *it, const char *prefix,
                      const char *stem, int *counter, int numbered) {
  const char *given = arg_str(it, "name");
  ++*counter;
  int n;
  if (given)
    n = snprintf(buf, cap, "%s%s", prefix, given);
  else if (numbered || *counter > 1)
    n = snprintf(buf, cap, "%s%s%d", prefix, stem, *counter);
  else
    n = snprintf(buf, cap, "%s%s", prefix, stem);
  if (n < 0 || (size_t)n >= sizeof(((fh_layer *)0)->name) || (size_t)n >= cap)
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "its name '%s' is longer than %zu characters", ATA(it), buf,
                   sizeof(((fh_layer *)0)->name) - 1);
  return 0;
}

static int append(ns_state *st, fh_layer L) {
  st->src = fh_model_append_from(st->m, L, st->src);
  memcpy(st->shape, L.out_shape, sizeof st->shape);
  return st->src;
}

static int build_list(ns_state *st, const ns_item *items, int n, const char *prefix);

static int is_flat(const int *s) { return s[1] == 1 && s[2] == 1; }

static int build_conv(ns_state *st, const ns_item *it, const char *name) {
  FH_TRY(check_keys(it, "k,kernel,s,stride,p,padding,g,groups,bias,init,binit,middle", 2));
  const int *in = st->shape;
  int out_c = 0, in_c = in[0], k, s, pad = 0, groups, bias, middle;
  const int np = npos(it);
  if (np == 0) return FH_FAIL(FH_ERR_CONFIG, AT(it) "give the output channels, e.g. conv(32,k=3)", ATA(it));
  if (np == 2) {
    FH_TRY(parse_int(it, "in_channels", arg_pos(it, 0), 1, 1 << 24, &in_c));
    FH_TRY(parse_int(it, "out_channels", arg_pos(it, 1), 1, 1 << 24, &out_c));
    if (in_c != in[0])
      return FH_FAIL(FH_ERR_CONFIG, AT(it) "expects %d input channels but its input is [%d, %d, %d]",
                     ATA(it), in_c, in[0], in[1], in[2]);
  } else {
    FH_TRY(parse_int(it, "out_channels", arg_pos(it, 0), 1, 1 << 24, &out_c));
  }
  FH_TRY(opt_int(it, "k", "kernel", -1, 3, 1, 1 << 16, &k));
  FH_TRY(opt_int(it, "s", "stride", -1, 1, 1, 1 << 16, &s));
  FH_TRY(opt_int(it, "g", "groups", -1, 1, 1, 1 << 24, &groups));
  FH_TRY(opt_bool(it, "bias", 1, &bias));
  FH_TRY(opt_bool(it, "middle", st->in_res, &middle));
  const char *ps = arg_str(it, "p");
  if (!ps) ps = arg_str(it, "padding");
  if (ps && (strcmp(ps, "same") == 0)) {
    if (s != 1)
      return FH_FAIL(FH_ERR_CONFIG, AT(it) "padding 'same' needs stride 1 (as PyTorch); stride is %d",
                     ATA(it), s);
    if (k % 2 == 0)
      return FH_FAIL(FH_ERR_CONFIG,
                     AT(it) "padding 'same' with the even kernel %d pads unevenly, which is not "
                            "supported; use an odd kernel or explicit padding",
                     ATA(it), k);
    pad = (k - 1) / 2;
  } else if (ps && strcmp(ps, "valid") == 0) {
    pad = 0;
  } else if (ps) {
    FH_TRY(parse_int(it, "padding", ps, 0, 1 << 16, &pad));
  }
  if (in[0] % groups || out_c % groups)
    return FH_FAIL(FH_ERR_CONFIG,
                   AT(it) "groups = %d must divide the input channels %d and the output channels %d",
                   ATA(it), groups, in[0], out_c);
  fh_conv2d_geom g;
  if (fh_conv2d_geometry(&g, in[0] / groups, in[1], in[2], out_c / groups, k, k, s, pad))
    return FH_FAIL(FH_ERR_CONFIG,
                   AT(it) "a %dx%d kernel with stride %d and padding %d does not fit its input "
                          "[%d, %d, %d]",
                   ATA(it), k, k, s, pad, in[0], in[1], in[2]);
  ns_init init;
  FH_TRY(parse_init(it, &st->dflt, &init));
  fh_layer L = groups == 1 ? fh_layer_conv2d(name, in[0], in[1], in[2], out_c, k, k, s, pad, bias)
                           : fh_layer_conv2d_grouped(name, in[0], in[1], in[2], out_c, k, s, pad,
                                                     groups, bias);
  apply_init(&L, &init);
  L.middle = middle;
  append(st, L);
  return 0;
}

static int build_pool(ns_state *st, const ns_item *it, const char *name, int avg) {
  FH_TRY(check_keys(it, "k,kernel,s,stride,p,padding,ceil", 1));
  const int *in = st->shape;
  int k, s, pad, ceil_mode;
  FH_TRY(opt_int(it, "k", "kernel", 0, 2, 1, 1 << 16, &k));
  FH_TRY(opt_int(it, "s", "stride", -1, k, 1, 1 << 16, &s));
  FH_TRY(opt_int(it, "p", "padding", -1, 0, 0, 1 << 16, &pad));
  FH_TRY(opt_bool(it, "ceil", 0, &ceil_mode));
  if (2 * pad > k)
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "padding %d is more than half the window %d (PyTorch refuses it too)",
                   ATA(it), pad, k);
  fh_pool2d_geom g;
  if (fh_pool2d_geometry_ceil(&g, in[0], in[1], in[2], k, s, pad, ceil_mode))
    return FH_FAIL(FH_ERR_CONFIG,
                   AT(it) "a %dx%d window with stride %d and padding %d does not fit its input "
                          "[%d, %d, %d]",
                   ATA(it), k, k, s, pad, in[0], in[1], in[2]);
  append(st, avg ? fh_layer_avgpool2d_ceil(name, in[0], in[1], in[2], k, s, pad, ceil_mode)
                 : fh_layer_maxpool2d_ceil(name, in[0], in[1], in[2], k, s, pad, ceil_mode));
  return 0;
}

static int build_linear(ns_state *st, const ns_item *it, const char *name) {
  FH_TRY(check_keys(it, "bias,init,binit", 2));
  const int *in = st->shape;
  const long long feat = (long long)in[0] * in[1] * in[2];
  if (!is_flat(in))
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "its input is [%d, %d, %d]; put flatten before it", ATA(it),
                   in[0], in[1], in[2]);
  int out_f = st->num_classes, in_f = (int)feat, bias;
  const int np = npos(it);
  if (np == 2) {
    FH_TRY(parse_int(it, "in_features", arg_pos(it, 0), 1, 1 << 30, &in_f));
    FH_TRY(parse_int(it, "out_features", arg_pos(it, 1), 1, 1 << 30, &out_f));
  } else if (np == 1) {
    FH_TRY(parse_int(it, "out_features", arg_pos(it, 0), 1, 1 << 30, &out_f));
  }
  if (in_f != feat)
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "expects %d input features but its input has %lld", ATA(it),
                   in_f, feat);
  FH_TRY(opt_bool(it, "bias", 1, &bias));
  ns_init init;
  FH_TRY(parse_init(it, &st->dflt, &init));
  fh_layer L = fh_layer_linear_bias(name, in[0], out_f, bias);
  apply_init(&L, &init);
  append(st, L);
  return 0;
}

/* res(proj=...)[body]: x -> body -> (+) <- shortcut(x). */
static int build_res(ns_state *st, const ns_item *it, const char *prefix, int index) {
  FH_TRY(check_keys(it, "proj,s,stride,pconv,pbn", 0));
  if (it->nbody == 0) return FH_FAIL(FH_ERR_CONFIG, AT(it) "the block [...] is empty", ATA(it));
  char p[64];
  const char *given = arg_str(it, "name");
  int np;
  if (given && strcmp(given, "_") == 0) /* no prefix of its own */
    np = snprintf(p, sizeof p, "%s", prefix);
  else if (given)
    np = snprintf(p, sizeof p, "%s%s.", prefix, given);
  else
    np = snprintf(p, sizeof p, "%sres%d.", prefix, index);
  if (np < 0 || (size_t)np + 12 >= sizeof(((fh_layer *)0)->name)) /* room for downsample.0 */
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "the block's name prefix '%s' leaves no room for its layers' names",
                   ATA(it), p);
  const int src = st->src;
  int in[3];
  memcpy(in, st->shape, sizeof in);
  const int was_in_res = st->in_res;
  st->in_res = 1;
  int rc = build_list(st, it->body, it->nbody, p);
  st->in_res = was_in_res;
  FH_TRY(rc);
  const int body = st->src;
  int out[3];
  memcpy(out, st->shape, sizeof out);
  const char *proj = arg_str(it, "proj");
  if (!proj) proj = "auto";
  const int same = in[0] == out[0] && in[1] == out[1] && in[2] == out[2];
  int shortcut = src;
  char n1[96], n2[96];
  if (!strcmp(proj, "identity") || (!strcmp(proj, "auto") && same)) {
    if (!same)
      return FH_FAIL(FH_ERR_CONFIG,
                     AT(it) "an identity shortcut needs the block to keep its input shape, but "
                            "[%d, %d, %d] becomes [%d, %d, %d]; use proj=convbn or proj=conv",
                     ATA(it), in[0], in[1], in[2], out[0], out[1], out[2]);
  } else if (!strcmp(proj, "auto") || !strcmp(proj, "convbn") || !strcmp(proj, "conv")) {
    const int with_bn = strcmp(proj, "conv") != 0;
    if (out[1] < 1 || out[2] < 1 || in[1] < out[1] || in[2] < out[2])
      return FH_FAIL(FH_ERR_CONFIG,
                     AT(it) "a 1x1 projection cannot map [%d, %d, %d] onto the block's output "
                            "[%d, %d, %d]",
                     ATA(it), in[0], in[1], in[2], out[0], out[1], out[2]);
    int stride;
    FH_TRY(opt_int(it, "s", "stride", -1, (in[1] + out[1] - 1) / out[1], 1, 1 << 16, &stride));
    fh_conv2d_geom g;
    if (fh_conv2d_geometry(&g, in[0], in[1], in[2], out[0], 1, 1, stride, 0) ||
        g.out_h != out[1] || g.out_w != out[2])
      return FH_FAIL(FH_ERR_CONFIG,
                     AT(it) "no 1x1 projection stride maps [%d, %d, %d] onto the block's output "
                            "[%d, %d, %d]",
                     ATA(it), in[0], in[1], in[2], out[0], out[1], out[2]);
    const char *pconv = arg_str(it, "pconv"), *pbn = arg_str(it, "pbn");
    snprintf(n1, sizeof n1, "%s%s", p, pconv ? pconv : "downsample.0");
    if (strlen(n1) >= sizeof(((fh_layer *)0)->name))
      return FH_FAIL(FH_ERR_CONFIG, AT(it) "the projection's name '%s' is too long", ATA(it), n1);
    fh_layer conv = fh_layer_conv2d(n1, in[0], in[1], in[2], out[0], 1, 1, stride, 0, !with_bn);
    apply_init(&conv, &st->dflt);
    conv.middle = 1;
    shortcut = fh_model_append_from(st->m, conv, src);
    if (with_bn) {
      snprintf(n2, sizeof n2, "%s%s", p, pbn ? pbn : "downsample.1");
      if (strlen(n2) >= sizeof(((fh_layer *)0)->name))
        return FH_FAIL(FH_ERR_CONFIG, AT(it) "the projection's name '%s' is too long", ATA(it), n2);
      shortcut = fh_model_append_from(st->m, fh_layer_batchnorm2d(n2, out[0], out[1], out[2]),
                                      shortcut);
    }
  } else {
    return FH_FAIL(FH_ERR_CONFIG, AT(it) "proj = '%s': choose auto, identity, conv or convbn",
                   ATA(it), proj);
  }
  snprintf(n1, sizeof n1, "%sadd", p);
  st->src = fh_model_append_join(st->m, fh_layer_add(n1, out[0], out[1], out[2]), body, shortcut);
  return 0;
}

/* One layer of the list onto the model. Long on purpose: one branch per layer
 * kind, each a key check, a name and a builder call; the table of kinds is
 * this function. */
static int build_item(ns_state *st, const ns_item *it, const char *prefix, ns_counters *cnt) {
  const char *kd = it->kind;
  const int *in = st->shape;
  char name[64];
  if (!strcmp(kd, "default")) {
    FH_TRY(check_keys(it, "init,binit", 0));
    ns_init d;
    FH_TRY(parse_init(it, &st->dflt, &d));
    st->dflt = d;
    return 0;
  }
  if (!strcmp(kd, "conv") || !strcmp(kd, "conv2d")) {
    FH_TRY(layer_name(name, sizeof name, it, prefix, "conv", &cnt->conv, 1));
    return build_conv(st, it, name);
  }
  if (!strcmp(kd, "linear") || !strcmp(kd, "fc")) {
    FH_TRY(layer_name(name, sizeof name, it, prefix, "fc", &cnt->fc, 1));
    return build_linear(st, it, name);
  }
  if (!strcmp(kd, "maxpool") || !strcmp(kd, "avgpool")) {
    FH_TRY(layer_name(name, sizeof name, it, prefix, "pool", &cnt->pool, 1));
    return build_pool(st, it, name, kd[0] == 'a');
  }
  if (!strcmp(kd, "gap") || !strcmp(kd, "adaptiveavgpool")) {
    FH_TRY(check_keys(it, "", strcmp(kd, "gap") ? 1 : 0));
    const char *o = arg_pos(it, 0);
    int osz = 1;
    if (o) FH_TRY(parse_int(it, "output_size", o, 1, 1 << 20, &osz));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "avgpool", &cnt->pool, 0));
    append(st, fh_layer_adaptive_avgpool(name, in[0], in[1], in[2], osz, osz));
    return 0;
  }
  if (!strcmp(kd, "bn") || !strcmp(kd, "bn1d") || !strcmp(kd, "bn2d")) {
    FH_TRY(check_keys(it, "", 1));
    const char *c = arg_pos(it, 0);
    if (c) {
      int ch = 0;
      FH_TRY(parse_int(it, "num_features", c, 1, 1 << 30, &ch));
      if (ch != in[0])
        return FH_FAIL(FH_ERR_CONFIG, AT(it) "expects %d channels but its input is [%d, %d, %d]",
                       ATA(it), ch, in[0], in[1], in[2]);
    }
    FH_TRY(layer_name(name, sizeof name, it, prefix, "bn", &cnt->bn, 1));
    const int one_d = !strcmp(kd, "bn1d") || (!strcmp(kd, "bn") && is_flat(in));
    if (one_d && !is_flat(in))
      return FH_FAIL(FH_ERR_CONFIG, AT(it) "BatchNorm1d needs a flat input, not [%d, %d, %d]",
                     ATA(it), in[0], in[1], in[2]);
    append(st, one_d ? fh_layer_batchnorm1d(name, in[0])
                     : fh_layer_batchnorm2d(name, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "relu")) {
    FH_TRY(check_keys(it, "", 0));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "relu", &cnt->relu, 1));
    append(st, fh_layer_relu(name, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "elu")) {
    FH_TRY(check_keys(it, "alpha", 1));
    float alpha = FH_ELU_ALPHA;
    const char *a = arg_str(it, "alpha");
    if (!a) a = arg_pos(it, 0);
    if (a) FH_TRY(parse_real(it, "alpha", a, 0, 1e6, &alpha));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "elu", &cnt->elu, 1));
    append(st, fh_layer_elu(name, alpha, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "leakyrelu") || !strcmp(kd, "lrelu")) {
    FH_TRY(check_keys(it, "slope,negative_slope", 1));
    float slope = FH_LEAKYRELU_SLOPE;
    const char *a = arg_str(it, "slope");
    if (!a) a = arg_str(it, "negative_slope");
    if (!a) a = arg_pos(it, 0);
    if (a) FH_TRY(parse_real(it, "slope", a, -1e6, 1e6, &slope));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "lrelu", &cnt->lrelu, 1));
    append(st, fh_layer_leakyrelu(name, slope, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "dropout")) {
    FH_TRY(check_keys(it, "p", 1));
    float p = 0.5f;
    const char *a = arg_str(it, "p");
    if (!a) a = arg_pos(it, 0);
    if (a) FH_TRY(parse_real(it, "p", a, 0, 1, &p));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "dropout", &cnt->drop, 1));
    append(st, fh_layer_dropout(name, p, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "flatten")) {
    FH_TRY(check_keys(it, "", 0));
    FH_TRY(layer_name(name, sizeof name, it, prefix, "flatten", &cnt->flat, 0));
    append(st, fh_layer_flatten(name, in[0], in[1], in[2]));
    return 0;
  }
  if (!strcmp(kd, "res")) return build_res(st, it, prefix, ++cnt->res);
  return FH_FAIL(FH_ERR_CONFIG,
                 AT(it) "unknown layer kind '%s' (conv, maxpool, avgpool, gap, bn, bn1d, bn2d, "
                        "relu, elu, leakyrelu, dropout, flatten, linear, res, default)",
                 ATA(it), kd);
}

static int build_list(ns_state *st, const ns_item *items, int n, const char *prefix) {
  ns_counters cnt;
  memset(&cnt, 0, sizeof cnt);
  for (int i = 0; i < n; i++) {
    FH_TRY(build_item(st, &items[i], prefix, &cnt));
  }
  return 0;
}

int fh_model_create_layers(fh_model **out, const char *arch, const char *spec, int in_c,
                           int in_h, int in_w, int num_classes, int max_batch) {
  *out = NULL;
  if (in_c < 1 || in_h < 1 || in_w < 1 || num_classes < 1 || max_batch < 1)
    return FH_FAIL(FH_ERR_CONFIG,
                   "model.arch = %s: input [%d, %d, %d], classes %d and batch size %d must be "
                   "positive",
                   arch, in_c, in_h, in_w, num_classes, max_batch);
  const char *p = spec;
  ns_item *items = NULL;
  int n = 0, pos = 0;
  FH_TRY(parse_list(&p, &items, &n, &pos, 0));
  if (n == 0) {
    free_items(items, n);
    return FH_FAIL(FH_ERR_CONFIG, "model.arch = %s: model.layers is empty; list the layers, e.g. "
                                  "model.layers = flatten linear(200) relu linear",
                   arch);
  }
  ns_state st;
  memset(&st, 0, sizeof st);
  st.m = fh_model_begin(arch, in_c, in_h, in_w, num_classes, max_batch);
  st.src = FH_LAYER_MODEL_INPUT;
  st.shape[0] = in_c, st.shape[1] = in_h, st.shape[2] = in_w;
  st.dflt.init = FH_INIT_TORCH_DEFAULT;
  st.num_classes = num_classes;
  int rc = build_list(&st, items, n, "");
  if (rc == 0 && fh_model_nlayers(st.m) == 0)
    rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: no layers, only defaults");
  if (rc == 0 && (st.shape[0] != num_classes || !is_flat(st.shape))) {
    const ns_item *last = &items[n - 1];
    rc = FH_FAIL(FH_ERR_CONFIG,
                 "model.layers: the network ends in [%d, %d, %d] after layer %d %s, but it needs "
                 "%d classes (the data set's, or model.outputs); end it in linear (its output defaults "
                 "to them)",
                 st.shape[0], st.shape[1], st.shape[2], last->pos, last->text, num_classes);
  }
  if (rc == 0 && st.src != fh_model_nlayers(st.m) - 1)
    rc = FH_FAIL(FH_ERR_CONFIG, "model.layers: internal: the output is not the last layer");
  free_items(items, n);
  if (rc) {
    fh_model_free(st.m);
    return rc;
  }
  FH_TRY(fh_model_finish(st.m));
  *out = st.m;
  return 0;
}
