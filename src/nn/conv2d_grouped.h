/* Grouped 2-D convolution (nn.Conv2d with groups = G > 1): the input's C
 * channels and the output's O channels are cut into G consecutive groups, and
 * group g's outputs see only group g's inputs. Weight [O, C / G, kh, kw]
 * (PyTorch layout), bias [O]. Each group is one ordinary convolution of C / G
 * to O / G channels (fh_conv2d_forward / fh_conv2d_backward of conv2d.h), run
 * on the group's channels gathered into contiguous staging buffers. */
#ifndef FH_CONV2D_GROUPED_H
#define FH_CONV2D_GROUPED_H

#include "nn/layer.h"

/* Conv2d(in_c, out_c, kernel, stride, padding, groups, bias) on inputs
 * [in_c, in_h, in_w]; groups must divide in_c and out_c and the geometry must
 * fit (the builder checks; otherwise the process aborts naming the layer).
 * iarg: kernel, kernel, stride, padding, bias, groups. */
fh_layer fh_layer_conv2d_grouped(const char *name, int in_c, int in_h, int in_w, int out_c,
                                 int kernel, int stride, int padding, int groups, int bias);

#endif
