/* The architectures a deck can name (model.arch) and their keys. Each builder
 * appends layers to a fresh model; the machinery is in model.c. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/conv_dnnl.h"
#include "nn/flatten.h"
#include "nn/model_build.h"
#include "nn/netspec.h"
#include "nn/pool.h"

#define FH_MLP_MAX_HIDDEN 64

const fh_key_spec fh_model_keys[] = {
    {"model.arch", FH_T_ENUM, "mlp", 0, 0,
     "mlp|cnn1|cnn2|cnn3|cnn4|cnn5|resnet4|resnet6|resnet8|resnet10|resnet18|vgg11_bn|vgg11_lips|"
     "resnet8x4|resnet32x4|layers|mnist_cnn|mcmahan_cnn|lenet5|augfl_fmnist",
     "network: mlp (model.hidden); pFedAFM cnn1..cnn5 (3x32x32, or any CxHxW from 16x16); LIPS resnet4..resnet18, "
     "vgg11_bn (torchvision's configuration A, 8 convs) and vgg11_lips (the LIPS code's 'A', 5 convs); "
     "distillation resnet8x4, resnet32x4; layers: the layer list model.layers; "
     "the named layer lists mnist_cnn (PFLlib), mcmahan_cnn, lenet5, augfl_fmnist "
     "(docs/layer-lists.md); `fedhpc model` shows its layers"},
    {"model.layers", FH_T_STRING, "", 0, 0, NULL,
     "layers: the network as a layer list, e.g. conv(32,k=5) relu maxpool(2) flatten linear "
     "(docs/layer-lists.md); shapes are inferred from the data set"},
    {"model.hidden", FH_T_INTLIST, "200,200", 1, 1000000, NULL,
     "mlp: hidden widths h1,...,hk of Linear(d,h1)-ReLU-...-Linear(hk,C); empty: softmax "
     "regression"},
    {"model.outputs", FH_T_INT, "0", 0, 1000000, NULL,
     "logits of the network's last layer; 0 = the data set's class count. More than the classes gives "
     "outputs no label names (the AugFL authors' networks have 100 for every data set); they enter the "
     "softmax and the argmax like any other"},
    {"model.conv", FH_T_ENUM, "auto", 0, 0, "auto|onednn|portable",
     "convolution kernels, for every model of the process: auto = oneDNN where fedhpc is built "
     "with it (FEDHPC_ONEDNN) and the CPU has AVX2, else portable (im2col + sgemm); onednn: as "
     "auto, but an error in a build without oneDNN; results differ between the two in the last "
     "bits"},
    FH_KEYS_END};

int fh_model_outputs(const fh_config *cfg, int classes, int *outputs) {
  const long long o = fh_cfg_int(cfg, "model.outputs");
  *outputs = o == 0 ? classes : (int)o;
  if (o != 0 && o < classes)
    return FH_FAIL(FH_ERR_CONFIG, "model.outputs = %lld is fewer than the data set's %d classes; set it to 0 "
                                  "(the class count) or to at least %d", o, classes, classes);
  return 0;
}

int fh_model_conv_choice(const fh_config *cfg) {
  if (strcmp(fh_cfg_origin(cfg, "model.conv"), "default") == 0) return 0;
  const char *v = fh_cfg_str(cfg, "model.conv");
  const fh_conv_backend b = strcmp(v, "onednn") == 0     ? FH_CONV_ONEDNN
                            : strcmp(v, "portable") == 0 ? FH_CONV_PORTABLE
                                                         : FH_CONV_AUTO;
  if (fh_conv_backend_set(b) != 0)
    return FH_FAIL(FH_ERR_CONFIG,
                   "model.conv = onednn: this fedhpc is built without oneDNN; install libdnnl-dev "
                   "and rebuild with -DFEDHPC_ONEDNN=ON, or choose model.conv = auto");
  return 0;
}

int fh_model_create_mlp(fh_model **out, int d, const int *hidden, int nhidden, int num_classes,
                        int max_batch) {
  *out = NULL;
  if (d < 1 || num_classes < 1 || max_batch < 1)
    return FH_FAIL(FH_ERR_CONFIG,
                   "mlp: input size %d, classes %d and batch size %d must all be at least 1", d,
                   num_classes, max_batch);
  /* As a layer list: linear(h1) relu ... linear(hk) relu linear on [d, 1, 1]. */
  char spec[64 * (FH_MLP_MAX_HIDDEN + 1) + 16];
  size_t used = 0;
  if (nhidden > FH_MLP_MAX_HIDDEN)
    return FH_FAIL(FH_ERR_CONFIG, "mlp: %d hidden layers; at most %d are supported", nhidden,
                   FH_MLP_MAX_HIDDEN);
  for (int k = 0; k < nhidden; k++) {
    if (hidden[k] < 1)
      return FH_FAIL(FH_ERR_CONFIG, "model.hidden: width %d of hidden layer %d must be at least 1",
                     hidden[k], k + 1);
    used += (size_t)snprintf(spec + used, sizeof spec - used, "linear(%d) relu ", hidden[k]);
  }
  snprintf(spec + used, sizeof spec - used, "linear");
  return fh_model_create_layers(out, "mlp", spec, d, 1, 1, num_classes, max_batch);
}

/* The pFedAFM CNNs (ALGORITHMS.md): conv1 5x5 3->16, ReLU, maxpool 2, conv2
 * 5x5 16->c2, ReLU, maxpool 2, flatten, fc1 c2*5*5 -> h1, ReLU, fc2 h1 -> 500,
 * ReLU, then the header fc3 500 -> C. */
typedef struct {
  const char *arch;
  int conv2_out, fc1_out;
} cnn_spec;

static const cnn_spec cnn_specs[] = {
    {"cnn1", 32, 2000}, {"cnn2", 16, 2000}, {"cnn3", 32, 1000},
    {"cnn4", 32, 800},  {"cnn5", 32, 500},
};

#define FH_CNN_FEATURES 500

static int create_cnn(fh_model **out, const cnn_spec *s, int in_c, int in_h, int in_w,
                      int num_classes, int max_batch) {
  /* Written for 3x32x32 (flatten c2*5*5); any image of at least 16x16 keeps
   * both pools non-empty, and the flatten width follows the input (1x28x28,
   * Fashion-MNIST: c2*4*4). The feature width (500) is the same for all five,
   * which is what pFedAFM needs. */
  if (in_h < 16 || in_w < 16)
    return FH_FAIL(FH_ERR_CONFIG,
                   "model.arch = %s needs images of at least 16x16 (two 5x5 convolutions and two 2x2 pools; "
                   "written for 3x32x32) but the data set gives %dx%dx%d; choose another model.arch or data set",
                   s->arch, in_c, in_h, in_w);
  if (num_classes < 1 || max_batch < 1)
    return FH_FAIL(FH_ERR_CONFIG, "model.arch = %s: classes %d and batch size %d must be at least 1",
                   s->arch, num_classes, max_batch);
  char spec[256];
  snprintf(spec, sizeof spec,
           "conv(16,k=5) relu maxpool(2) conv(%d,k=5) relu maxpool(2) flatten linear(%d) relu "
           "linear(%d) relu linear",
           s->conv2_out, s->fc1_out, FH_CNN_FEATURES);
  return fh_model_create_layers(out, s->arch, spec, in_c, in_h, in_w, num_classes, max_batch);
}

/* ---- residual networks ------------------------------------------------------- */

/* The BasicBlock of torchvision, LIPS and RepDistiller, named "<p>.conv1",
 * "<p>.bn1", ..., "<p>.downsample.0" / ".1" as their state_dicts:
 *
 *   x -> conv1 3x3/stride -> bn1 -> relu -> conv2 3x3 -> bn2 --(+)-> relu
 *   x -> [downsample: 1x1 conv/stride -> bn, when the shape changes] --^
 *
 * as a residual block of a layer list (convs Kaiming fan-out, no bias; its
 * three convs are LIPS middle layers). */
static size_t basic_block(char *buf, size_t cap, const char *p, int planes, int stride) {
  return (size_t)snprintf(buf, cap,
                          " res(name=%s,s=%d)[conv(%d,k=3,s=%d,p=1,bias=0) bn relu "
                          "conv(%d,k=3,p=1,bias=0) bn] relu(name=%s.relu2)",
                          p, stride, planes, stride, planes, p);
}

/* Two families share the builder.
 *
 * LIPS (resnet4/6/8/10/18; the authors' fling/model/resnet_itops.py, which is
 * torchvision's ResNet with fewer stages): conv1 7x7/2 pad 3 (64 channels, no
 * bias), bn1, ReLU, maxpool 3/2 pad 1, then stages of BasicBlocks with widths
 * 64, 128, 256, 512 and strides 1, 2, 2, 2, adaptive average pool to 1x1,
 * linear. Blocks per stage, from the authors' code: resnet4 [1] (one stage),
 * resnet6 [1, 1], resnet8 [1, 1, 1], resnet10 [1, 1, 1, 1], resnet18
 * [2, 2, 2, 2]; the linear reads the last stage's width. Names follow
 * torchvision (layer1.0.conv1.weight, layer2.0.downsample.0.weight, fc.weight);
 * the authors' code calls the same tensors layers.0.0.conv1.weight,
 * layers.1.0.shortcut.0.weight and classifier.weight
 * (analysis/fedhpc_zoo.py maps one onto the other).
 *
 * CIFAR ResNets of the distillation literature (resnet8x4, resnet32x4;
 * RepDistiller's models/resnet.py, depth 6n + 2): conv1 3x3/1 pad 1 (32
 * channels, no bias), bn1, ReLU, three stages of n BasicBlocks with widths 64,
 * 128, 256 and strides 1, 2, 2 (layer1.0 has a downsample too: 32 -> 64
 * channels), average pool, fc. RepDistiller pools with AvgPool2d(8), which on
 * its 32x32 inputs is the adaptive pool used here; other input sizes get the
 * adaptive pool (where AvgPool2d(8) would not fit the linear layer). */
typedef struct {
  const char *arch;
  int cifar;      /* 0: LIPS (7x7 stem, maxpool), 1: CIFAR 3x3 stem of 32  */
  int nstages;
  int blocks[4];  /* BasicBlocks per stage                                  */
} resnet_spec;

static const resnet_spec resnet_specs[] = {
    {"resnet4", 0, 1, {1}},          {"resnet6", 0, 2, {1, 1}},
    {"resnet8", 0, 3, {1, 1, 1}},    {"resnet10", 0, 4, {1, 1, 1, 1}},
    {"resnet18", 0, 4, {2, 2, 2, 2}}, {"resnet8x4", 1, 3, {1, 1, 1}},
    {"resnet32x4", 1, 3, {5, 5, 5}},
};

/* Image samples only: a flat feature vector [d, 1, 1] has no spatial axes. */
static int need_image(const char *arch, int in_c, int in_h, int in_w, int min_hw, int num_classes,
                      int max_batch) {
  if (in_c < 1 || in_h < min_hw || in_w < min_hw)
    return FH_FAIL(FH_ERR_CONFIG,
                   "model.arch = %s needs image samples of at least %dx%d pixels but the data "
                   "set gives %dx%dx%d; choose another model.arch or data set",
                   arch, min_hw, min_hw, in_c, in_h, in_w);
  if (num_classes < 1 || max_batch < 1)
    return FH_FAIL(FH_ERR_CONFIG, "model.arch = %s: classes %d and batch size %d must be at least 1",
                   arch, num_classes, max_batch);
  return 0;
}

static int create_resnet(fh_model **out, const resnet_spec *s, int in_c, int in_h, int in_w,
                         int num_classes, int max_batch) {
  /* Every conv and pool of these nets fits any input of at least 2x2 (the
   * 7x7 stem has padding 3, the maxpool padding 1). */
  FH_TRY(need_image(s->arch, in_c, in_h, in_w, 2, num_classes, max_batch));
  static const int lips_widths[4] = {64, 128, 256, 512}, cifar_widths[3] = {64, 128, 256};
  char spec[4096];
  size_t used = (size_t)snprintf(
      spec, sizeof spec, "%s",
      s->cifar ? "default(init=kaiming) conv(32,k=3,p=1,bias=0,name=conv1) bn(name=bn1) "
                 "relu(name=relu)"
               : "default(init=kaiming) conv(64,k=7,s=2,p=3,bias=0,name=conv1) bn(name=bn1) "
                 "relu(name=relu) maxpool(3,s=2,p=1,name=maxpool)");
  for (int st = 0; st < s->nstages; st++) {
    const int width = s->cifar ? cifar_widths[st] : lips_widths[st];
    for (int b = 0; b < s->blocks[st]; b++) {
      char p[32];
      snprintf(p, sizeof p, "layer%d.%d", st + 1, b);
      used += basic_block(spec + used, sizeof spec - used, p, width, b == 0 && st > 0 ? 2 : 1);
    }
  }
  snprintf(spec + used, sizeof spec - used, " gap(name=avgpool) linear(name=fc,init=torch)");
  return fh_model_create_layers(out, s->arch, spec, in_c, in_h, in_w, num_classes, max_batch);
}

/* ---- VGG-11 with BatchNorm -------------------------------------------------- */

/* torchvision's vgg11_bn features (configuration A: 64, M, 128, M, 256, 256,
 * M, 512, 512, M, 512, 512, M; each number a 3x3 pad 1 conv with bias, then
 * BatchNorm2d and ReLU; M a 2x2 max pool), named features.<i> with
 * torchvision's Sequential indices (features.0.weight, features.1.running_mean,
 * ..., features.25.bias). The classifier is the one the CIFAR variants use
 * (the LIPS authors' fling/model/vgg.py, and the common CIFAR VGGs): after the
 * five pools a 32x32 input is [512, 1, 1], flattened into a single
 * Linear(512, C) named classifier.0, instead of torchvision's 7x7 average
 * pool and three 4096-wide layers made for 224x224 images. Larger inputs
 * flatten [512, H/32, W/32] into that linear. Initialised as torchvision and
 * LIPS do: convs Kaiming normal (fan-out) with zero bias, BatchNorm 1 and 0,
 * the linear N(0, 0.01^2) with zero bias. LIPS middle layers: every conv
 * after the first. (The LIPS code's own configuration 'A' has a single conv
 * at each of 256 and 512; torchvision's, used here, has two.)
 *
 * vgg11_lips is the LIPS code's own configuration 'A' (QiaoXiao7282/LIPS,
 * fling/model/vgg.py, VGG_CONFIGS['A'], registered there as vgg11_bn): 64, M,
 * 128, M, 256, M, 512, M, 512, M, five convs, with the same BatchNorm, ReLU,
 * naming, initialisation and Linear(512, C). (Their make_layers starts from 3
 * input channels whatever input_channel says; here the first conv takes the
 * data's channels, so 1-channel images work.) */
static const int vgg11_bn_cfg[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}; /* 0: M */
static const int vgg11_lips_cfg[] = {64, 0, 128, 0, 256, 0, 512, 0, 512, 0};

static int create_vgg(fh_model **out, const char *arch, const int *cfg, size_t ncfg, int in_c, int in_h, int in_w,
                      int num_classes, int max_batch) {
  FH_TRY(need_image(arch, in_c, in_h, in_w, 32, num_classes, max_batch));
  char spec[2048];
  size_t used = (size_t)snprintf(spec, sizeof spec, "default(init=kaiming)");
  int index = 0, nconv = 0;
  for (size_t k = 0; k < ncfg; k++) {
    if (cfg[k] == 0) {
      used += (size_t)snprintf(spec + used, sizeof spec - used, " maxpool(2,name=features.%d)",
                               index++);
      continue;
    }
    used += (size_t)snprintf(spec + used, sizeof spec - used,
                             " conv(%d,k=3,p=1,middle=%d,name=features.%d) bn(name=features.%d) "
                             "relu(name=features.%d)",
                             cfg[k], nconv++ > 0, index, index + 1, index + 2);
    index += 3;
  }
  snprintf(spec + used, sizeof spec - used, " flatten linear(name=classifier.0,init=normal:0.01)");
  return fh_model_create_layers(out, arch, spec, in_c, in_h, in_w, num_classes, max_batch);
}

int fh_model_header_first_view(const fh_model *m) {
  const fh_layer *head = fh_model_layer(m, fh_model_nlayers(m) - 1);
  return fh_model_nviews(m) - head->nparams;
}

int fh_model_feature_dim(const fh_model *m) {
  return (int)fh_model_layer(m, fh_model_nlayers(m) - 1)->in_size;
}

int fh_model_create(fh_model **out, const fh_config *cfg, int in_c, int in_h, int in_w,
                    int num_classes, int max_batch) {
  return fh_model_create_arch(out, cfg, fh_cfg_str(cfg, "model.arch"), in_c, in_h, in_w,
                              num_classes, max_batch);
}

int fh_model_create_arch(fh_model **out, const fh_config *cfg, const char *arch, int in_c,
                         int in_h, int in_w, int num_classes, int max_batch) {
  *out = NULL;
  FH_TRY(fh_model_conv_choice(cfg));
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
  for (size_t k = 0; k < sizeof cnn_specs / sizeof cnn_specs[0]; k++)
    if (strcmp(arch, cnn_specs[k].arch) == 0)
      return create_cnn(out, &cnn_specs[k], in_c, in_h, in_w, num_classes, max_batch);
  for (size_t k = 0; k < sizeof resnet_specs / sizeof resnet_specs[0]; k++)
    if (strcmp(arch, resnet_specs[k].arch) == 0)
      return create_resnet(out, &resnet_specs[k], in_c, in_h, in_w, num_classes, max_batch);
  if (strcmp(arch, "vgg11_bn") == 0)
    return create_vgg(out, arch, vgg11_bn_cfg, sizeof vgg11_bn_cfg / sizeof vgg11_bn_cfg[0], in_c, in_h, in_w,
                      num_classes, max_batch);
  if (strcmp(arch, "vgg11_lips") == 0)
    return create_vgg(out, arch, vgg11_lips_cfg, sizeof vgg11_lips_cfg / sizeof vgg11_lips_cfg[0], in_c, in_h, in_w,
                      num_classes, max_batch);
  if (strcmp(arch, "layers") == 0)
    return fh_model_create_layers(out, arch, fh_cfg_str(cfg, "model.layers"), in_c, in_h, in_w,
                                  num_classes, max_batch);
  const char *named = fh_netspec_named(arch);
  if (named)
    return fh_model_create_layers(out, arch, named, in_c, in_h, in_w, num_classes, max_batch);
  return FH_FAIL(FH_ERR_CONFIG,
                 "model.arch: unknown architecture '%s' (choices: mlp, cnn1..cnn5, resnet4, "
                 "resnet6, resnet8, resnet10, resnet18, vgg11_bn, vgg11_lips, resnet8x4, resnet32x4, layers, "
                 "mnist_cnn, mcmahan_cnn, lenet5, augfl_fmnist)",
                 arch);
}
