/* Networks written as layer lists (model.arch = layers, model.layers = ...),
 * and the named networks that are layer lists (lenet5, mnist_cnn, ...).
 *
 * A layer list is a sequence of layers separated by blanks, each a kind with
 * optional arguments in parentheses: positional ones first, then key=value.
 * Shapes are inferred from the data set's [C, H, W]; numbers of channels and
 * features in the list are the layer's OUTPUT (conv(32), linear(512)); a
 * layer given two, conv(1,32) or linear(3136,10), names its input too, which
 * is then checked. docs/layer-lists.md has the full grammar; in short:
 *
 *   conv(OUT, k=K, s=1, p=0|same, g=1, bias=1)       nn.Conv2d (square kernel;
 *                                                    groups: conv2d_grouped.c)
 *   maxpool(K, s=K, p=0, ceil)  avgpool(...)         nn.MaxPool2d / AvgPool2d
 *   gap                                              nn.AdaptiveAvgPool2d(1)
 *   bn  bn1d  bn2d                                   nn.BatchNorm1d/2d (bn: by shape)
 *   relu  elu(alpha=1)  leakyrelu(0.01)  dropout(0.5)  flatten
 *   linear(OUT, bias=1)  linear                      nn.Linear (OUT omitted: classes)
 *   res(proj=auto|identity|conv|convbn, s=S)[ ... ]  x + body(x): the shortcut is
 *                                                    the identity, or a 1x1 conv
 *                                                    of stride S (inferred)
 *                                                    (+ BatchNorm2d, no bias)
 *   default(init=..., binit=...)                     the initialisation of the
 *                                                    conv and linear layers after it
 *
 * Every conv and linear takes init=torch|kaiming|normal:STD|trunc:STD:LO:HI
 * (PyTorch's default; kaiming_normal_ fan-out with zero bias; N(0, STD^2)
 * with zero bias; trunc_normal_) and
 * binit=VALUE (a constant bias); every layer name=NAME (its state_dict
 * prefix; otherwise conv1, conv2, ..., fc1, ..., bn1, ..., and inside the
 * k-th residual block res<k>.conv1, ..., res<k>.downsample.0; res(name=P)
 * names them P.conv1, ..., res(name=_) adds no prefix, pconv=NAME and
 * pbn=NAME rename the projection's conv and BatchNorm). */
#ifndef FH_NETSPEC_H
#define FH_NETSPEC_H

#include "nn/model.h"

/* The layer list of a named network (model.arch = lenet5, ...), or NULL. */
const char *fh_netspec_named(const char *arch);

/* Builds the model of the layer list spec for inputs [in_c, in_h, in_w] and
 * num_classes outputs; arch is the model's name (fh_model_arch). Parameters
 * uninitialised. A list that cannot be built is an FH_ERR_CONFIG error naming
 * the layer, its position in the list and the shapes. */
int fh_model_create_layers(fh_model **out, const char *arch, const char *spec, int in_c,
                           int in_h, int in_w, int num_classes, int max_batch);

#endif
