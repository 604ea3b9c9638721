/* Small HDF5 helpers for the files rank 0 writes (metrics, profiles, models).
 * Every file is plain HDF5 that h5py opens without help: numeric datasets,
 * variable-length-free fixed strings as attributes. */
#ifndef FH_H5UTIL_H
#define FH_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* Attribute helpers on any object (file or group or dataset). */
int fh_h5_attr_str(hid_t obj, const char *name, const char *value);
int fh_h5_attr_int(hid_t obj, const char *name, long long value);
int fh_h5_attr_double(hid_t obj, const char *name, double value);

/* A dataset of doubles (or int) that grows along its first axis by one row per
 * round; row_shape gives the other axes (rank-1 datasets: ndim_row = 0). */
typedef struct {
  hid_t dset;
  hid_t type;
  int ndim;              /* total rank, 1..4                  */
  hsize_t dims[4];       /* current extent                    */
} fh_h5_series;

int fh_h5_series_create(fh_h5_series *s, hid_t loc, const char *name, hid_t type, int ndim_row,
                        const hsize_t *row_shape);
/* Appends one row (row_shape elements of type s->type). */
int fh_h5_series_append(fh_h5_series *s, const void *row);
void fh_h5_series_close(fh_h5_series *s);

/* Writes a whole dataset of the given type and shape in one call. */
int fh_h5_write(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims,
                const void *data);

/* Creates the groups of a path like "a/b" if missing; returns the last group. */
hid_t fh_h5_group(hid_t loc, const char *path);

/* Error reporting of the readers of user files: HDF5 prints its whole error
 * stack on every failure by default; fedhpc reports one line. Between
 * fh_h5_quiet_begin and fh_h5_quiet_end the printing is off; fh_h5_reason
 * gives the most specific reason on the stack ("HDF5 call failed" if none). */
typedef struct {
  H5E_auto2_t func;
  void *data;
} fh_h5_quiet;
void fh_h5_quiet_begin(fh_h5_quiet *q);
void fh_h5_quiet_end(const fh_h5_quiet *q);
const char *fh_h5_reason(char buf[256]);

#endif

/* An integer attribute of obj, or dflt when it is missing or unreadable. */
long long fh_h5_attr_int_get(hid_t obj, const char *name, long long dflt);

/* Whether every link of a path like "/train/x" or "metrics/round" exists. */
int fh_h5_path_exists(hid_t loc, const char *path);

/* Files rank 0 writes whole (model, profile, partition, features): built in
 * memory (HDF5's core driver, no backing store) and written to disk by
 * fh_h5_mem_commit with plain write() calls, so that a full disk is one
 * failed write with its cause, never an HDF5 file that cannot be closed. */
hid_t fh_h5_mem_create(void);
/* Writes f's image to path (created or truncated, then fsynced) and closes f,
 * also on failure. 0, or FH_ERR_OUTPUT naming path and the cause ("no space
 * left on device"); a failed write removes path. */
int fh_h5_mem_commit(hid_t f, const char *path);

/* A file that cannot be closed (a write to it failed: HDF5 1.10 would flush
 * it again at close, fail, and leave a half-closed file that crashes the
 * library's shutdown in MPI_Finalize): left open. Closes f when its data are
 * whole (H5Fclose succeeds), else leaves it open; 0 or FH_ERR_OUTPUT. */
int fh_h5_close(hid_t f, const char *path);
/* Whether any HDF5 file is still open (left open after a failed write): the
 * process must then end without shutting the HDF5 library down. */
int fh_h5_files_left_open(void);
