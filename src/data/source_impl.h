/* Shared by the pool sources (not part of the public interface): each source
 * file fills an fh_source from the deck, and these helpers keep their checks
 * and messages alike. */
#ifndef FH_SOURCE_IMPL_H
#define FH_SOURCE_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "data/source.h"

/* Each fills src (name, classes, shape, n, labels, offsets, read_rows, close,
 * impl, value_scale, mean, std) from the deck's [data] keys. On an error src
 * keeps what it allocated so far, and fh_source_close frees it. */
int fh_idx_open(fh_source *src, const fh_config *cfg);
int fh_cifar_open(fh_source *src, const fh_config *cfg, int cifar100);
int fh_leaf_open(fh_source *src, const fh_config *cfg);
int fh_hdf5_open(fh_source *src, const fh_config *cfg);
int fh_synthimg_open(fh_source *src, const fh_config *cfg);
int fh_features_open(fh_source *src, const fh_config *cfg); /* data/features.c */

/* src->mean / src->std [src->c] from nvals values each (1: the same for every
 * channel, else one per channel; nvals must be 1 or src->c). */
void fh_source_set_norm(fh_source *src, const float *mean, const float *std, int nvals);

/* data.path, checked to be a folder ("data.path = '...': no such folder" /
 * "is a file, not a folder"; FH_ERR_CONFIG when empty). */
int fh_source_folder(const fh_config *cfg, const char *what, const char **dir);

/* Where Debian's dataset-fashion-mnist installs Fashion-MNIST (MNIST's file
 * names, gzipped): data.source = fmnist reads it when data.path is empty. */
#define FH_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
/* data.path, or FH_FMNIST_DIR for data.source = fmnist with an empty path. */
const char *fh_source_path(const fh_config *cfg);

/* "dir/name" into out [len]; 0, or -1 when it does not fit. */
int fh_path_join(char *out, size_t len, const char *dir, const char *name);
int fh_file_exists(const char *path);

/* Reads exactly len bytes at offset of fd; FH_ERR_DATA naming path when the
 * file ends first ("truncated") or the read fails. */
int fh_pread_full(int fd, const char *path, void *buf, size_t len, int64_t offset);

#endif
