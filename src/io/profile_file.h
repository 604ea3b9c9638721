/* profile.h5: per round, per rank, per phase wall time and PAPI counts, written
 * by rank 0 from one MPI_Gather per round (same .partial -> final naming as
 * metrics.h5).
 *   /time      float64 [rounds, ranks, phases]   seconds
 *   /counters  int64   [rounds, ranks, phases, events]  (only with events)
 *   attrs: phases "broadcast,local,...", events "PAPI_TOT_INS,...", nranks */
#ifndef FH_PROFILE_FILE_H
#define FH_PROFILE_FILE_H

#include <hdf5.h>

#include "core/profile.h"
#include "io/h5util.h"

typedef struct {
  hid_t file;
  char partial_path[4096], final_path[4096];
  int nranks, nevents;
  fh_h5_series time, counters;
} fh_profile_file;

int fh_profile_open(fh_profile_file *pf, const char *run_dir, int nranks, const fh_profiler *p);
/* times [nranks][FH_NPHASES]; counts [nranks][FH_NPHASES][nevents] or NULL. */
int fh_profile_append(fh_profile_file *pf, const double *times, const long long *counts);
int fh_profile_close(fh_profile_file *pf, const char *status);

#endif
