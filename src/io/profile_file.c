#include "io/profile_file.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

int fh_profile_open(fh_profile_file *pf, const char *run_dir, int nranks, const fh_profiler *p) {
  memset(pf, 0, sizeof *pf);
  pf->nranks = nranks;
  pf->nevents = p->nevents;
  snprintf(pf->final_path, sizeof pf->final_path, "%s/profile.h5", run_dir);
  snprintf(pf->partial_path, sizeof pf->partial_path, "%s/profile.h5.partial", run_dir);
  remove(pf->final_path);
  pf->file = H5Fcreate(pf->partial_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (pf->file < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create file", pf->partial_path);
  char phases[256] = "", events[FH_MAX_EVENTS * 66] = "";
  for (int i = 0; i < FH_NPHASES; i++) {
    if (i) strcat(phases, ",");
    strcat(phases, fh_phase_names[i]);
  }
  for (int i = 0; i < p->nevents; i++) {
    if (i) strcat(events, ",");
    strcat(events, p->event_names[i]);
  }
  FH_TRY(fh_h5_attr_str(pf->file, "status", "running"));
  FH_TRY(fh_h5_attr_str(pf->file, "phases", phases));
  FH_TRY(fh_h5_attr_str(pf->file, "events", events));
  FH_TRY(fh_h5_attr_int(pf->file, "nranks", nranks));
  FH_TRY(fh_h5_attr_str(pf->file, "timer", "MPI_Wtime"));
  hsize_t tshape[2] = {(hsize_t)nranks, FH_NPHASES};
  FH_TRY(fh_h5_series_create(&pf->time, pf->file, "time", H5T_NATIVE_DOUBLE, 2, tshape));
  if (p->nevents > 0) {
    hsize_t cshape[3] = {(hsize_t)nranks, FH_NPHASES, (hsize_t)p->nevents};
    FH_TRY(fh_h5_series_create(&pf->counters, pf->file, "counters", H5T_NATIVE_LLONG, 3, cshape));
  }
  return 0;
}

int fh_profile_append(fh_profile_file *pf, const double *times, const long long *counts) {
  FH_TRY(fh_h5_series_append(&pf->time, times));
  if (pf->nevents > 0 && counts) FH_TRY(fh_h5_series_append(&pf->counters, counts));
  return 0;
}

int fh_profile_close(fh_profile_file *pf, const char *status) {
  if (pf->file <= 0) return 0;
  fh_h5_attr_str(pf->file, "status", status);
  fh_h5_series_close(&pf->time);
  if (pf->nevents > 0) fh_h5_series_close(&pf->counters);
  herr_t st = H5Fclose(pf->file);
  pf->file = 0;
  if (st < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot close file", pf->partial_path);
  if (strcmp(status, "complete") == 0 && rename(pf->partial_path, pf->final_path) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s", pf->partial_path, pf->final_path);
  return 0;
}
