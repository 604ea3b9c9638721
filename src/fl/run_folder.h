/* The run folder RUN = output.dir/output.name: prepared and locked before the
 * first round, and given its final files after the last (every file is
 * written under a temporary or .partial name first; only when all are whole
 * do they get their final names, the model first and metrics.h5 last, so a
 * metrics.h5 means a complete run).
 *
 * The lock RUN/fedhpc.lock (the owner's "host pid") keeps a second run off a
 * folder that a run owns: the second refuses at start (FH_ERR_OUTPUT, naming
 * the owner). A lock whose process no longer exists (a killed run on this
 * host) is taken over with a warning; a lock from another host is honoured
 * (its process cannot be checked from here): the message says to remove it
 * when that run is gone. */
#ifndef FH_RUN_FOLDER_H
#define FH_RUN_FOLDER_H

#include "core/config.h"
#include "fl/run.h"
#include "io/metrics.h"
#include "io/profile_file.h"

/* Rank 0: makes RUN/ and takes its lock (0 when this process holds it
 * already). `fedhpc run` calls it before the run is set up, so that nothing
 * a run creates in RUN/ (the hdf5 client-state files) can touch the files of
 * a run that owns the folder. */
int fh_run_folder_lock(const fh_config *cfg, const char *dir);

/* Rank 0: makes RUN/, takes its lock (fh_run_folder_lock), removes an earlier run's outputs (a
 * resumed run keeps RUN/checkpoint.h5) and writes RUN/config.ini (the
 * resolved deck) whole. On failure the lock is not kept. */
int fh_run_folder_prepare(const fh_config *cfg, const char *dir, const char *ini, int resume);

/* Rank 0: releases RUN/fedhpc.lock if this process holds it (any other call:
 * nothing). */
void fh_run_folder_unlock(const char *dir);

/* Collective, after the last round (rc: the agreed outcome so far;
 * interrupted: stopped by signal stop_sig after round `done`): writes
 * model.h5 (rank 0, output.save_model), profile.h5 and closes metrics.h5 with
 * the run's status, renames what is whole to its final name, and releases
 * the lock. Returns the agreed outcome. */
int fh_run_folder_finish(fh_run *run, const char *run_dir, fh_metrics_file *mf, const fh_profile_history *hist,
                         int rc, int interrupted, int stop_sig, int done, const char *ini);

#endif
