/* The run folder: preparation and lock before the first round, the final
 * files after the last (see run_folder.h). */
#include "fl/run_folder.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/signals.h"
#include "io/model_file.h"

/* ---- the lock ---------------------------------------------------------------- */

static void lock_path(const char *dir, char *out, size_t len) { snprintf(out, len, "%s/fedhpc.lock", dir); }

static void lock_me(char *out, size_t len) {
  char host[256] = "unknown";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  snprintf(out, len, "%s %ld\n", host, (long)getpid());
}

/* The owner written in a lock file: 0, or -1 when it cannot be read (a run
 * killed while writing it). */
static int lock_owner(const char *path, char *host, size_t hlen, long *pid) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[400] = "";
  int ok = fgets(line, sizeof line, f) != NULL;
  fclose(f);
  char h[300];
  if (!ok || sscanf(line, "%299s %ld", h, pid) != 2 || *pid <= 0) return -1;
  snprintf(host, hlen, "%s", h);
  return 0;
}

static int lock_take(const char *dir) {
  char path[4200], me[400], myhost[256] = "unknown";
  lock_path(dir, path, sizeof path);
  lock_me(me, sizeof me);
  gethostname(myhost, sizeof myhost - 1);
  for (int attempt = 0; attempt < 3; attempt++) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      size_t n = strlen(me);
      int ok = write(fd, me, n) == (ssize_t)n;
      int e = errno;
      close(fd);
      if (ok) return 0;
      unlink(path);
      const char *cause = fh_write_cause(path, e);
      return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write the run folder's lock: %s", path, cause[0] ? cause : strerror(e));
    }
    if (errno != EEXIST)
      return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create the run folder's lock: %s; set output.dir to a writable "
                                    "directory", path, strerror(errno));
    char host[300] = "";
    long pid = 0;
    if (lock_owner(path, host, sizeof host, &pid) == 0) {
      int here = strcmp(host, myhost) == 0;
      if (here && pid == (long)getpid()) return 0; /* taken earlier by this run (fh_run_folder_lock) */
      if (!here)
        return FH_FAIL(FH_ERR_OUTPUT, "%s is in use by the run of process %ld on host %s (lock %s); choose another "
                                      "output.name, or remove the lock if that run is no longer running",
                       dir, pid, host, path);
      if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
        return FH_FAIL(FH_ERR_OUTPUT, "%s is in use by the run of process %ld on host %s (lock %s); wait for it to "
                                      "end or choose another output.name", dir, pid, host, path);
      fh_warn("%s: taking over the lock of process %ld on %s, which is no longer running (a run that was killed)",
              dir, pid, host);
    } else {
      fh_warn("%s: taking over an unreadable lock %s (a run killed while taking it)", dir, path);
    }
    if (unlink(path) != 0 && errno != ENOENT)
      return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot remove a stale lock: %s", path, strerror(errno));
  }
  return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot take the run folder's lock %s (another run keeps taking it)", dir, path);
}

void fh_run_folder_unlock(const char *dir) {
  char path[4200], host[300], me[400], mine[400];
  long pid = 0;
  lock_path(dir, path, sizeof path);
  lock_me(me, sizeof me);
  if (lock_owner(path, host, sizeof host, &pid) != 0) return;
  snprintf(mine, sizeof mine, "%s %ld\n", host, pid);
  if (strcmp(mine, me) == 0) unlink(path);
}

/* ---- before the first round ------------------------------------------------------ */

static int write_config(const char *dir, const char *ini) {
  /* written whole under a temporary name, synced, then renamed, so that a run
   * killed here (a resumed one rewrites it) never leaves a truncated deck */
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/config.ini", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  int ok = f && fputs(ini, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int e = errno;
  if (f && fclose(f) != 0 && ok) ok = 0, e = errno;
  if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
  if (!ok) {
    remove(tmp);
    const char *cause = fh_write_cause(path, e);
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write: %s; set output.dir to a writable directory", path,
                   cause[0] ? cause : strerror(e));
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) { /* the rename itself reaches the disk */
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int fh_run_folder_lock(const fh_config *cfg, const char *dir) {
  if (fh_mkdir_p(dir) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "output.dir = '%s': cannot create the run folder '%s': %s; "
                                  "set output.dir to a writable directory",
                   fh_cfg_str(cfg, "output.dir"), dir, strerror(errno));
  return lock_take(dir);
}

int fh_run_folder_prepare(const fh_config *cfg, const char *dir, const char *ini, int resume) {
  FH_TRY(fh_run_folder_lock(cfg, dir));
  /* An earlier run's outputs in the same folder must not pass for this run's. */
  static const char *const stale[] = {"metrics.h5", "profile.h5", "model.h5", "metrics.h5.partial",
                                      "profile.h5.partial", "model.h5.partial", "profile.h5.tmp",
                                      "model.h5.partial.tmp", "config.ini.tmp", "checkpoint.h5.tmp", "membership.h5",
                                      "metrics.rows.csv", "checkpoint.h5"};
  char path[4200];
  size_t nstale = sizeof stale / sizeof stale[0] - (resume ? 1 : 0);
  int rc = 0;
  for (size_t i = 0; i < nstale && rc == 0; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, stale[i]);
    if (remove(path) != 0 && errno != ENOENT)
      rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot remove an earlier run's file: %s; choose another output.name", path,
                   strerror(errno));
  }
  if (rc == 0) rc = write_config(dir, ini);
  if (rc) fh_run_folder_unlock(dir);
  return rc;
}

/* ---- after the last round --------------------------------------------------------- */

int fh_run_folder_finish(fh_run *run, const char *run_dir, fh_metrics_file *mf, const fh_profile_history *hist,
                         int rc, int interrupted, int stop_sig, int done, const char *ini) {
  const fh_config *cfg = run->cfg;
  MPI_Comm comm = run->comm;
  const int is_root = run->rank == 0, R = run->rounds;
  char model_path[4200], model_tmp[4200];
  snprintf(model_path, sizeof model_path, "%s/model.h5", run_dir);
  snprintf(model_tmp, sizeof model_tmp, "%s/model.h5.partial", run_dir);
  if (rc == 0 && !interrupted && is_root && fh_cfg_bool(cfg, "output.save_model")) {
    int shape[3] = {run->data->c, run->data->h, run->data->w};
    const size_t in = fh_model_input_size(run->model);
    if (in != (size_t)shape[0] * shape[1] * shape[2]) /* a model on features (a header): [d, 1, 1] */
      shape[0] = (int)in, shape[1] = shape[2] = 1;
    const float *g = run->alg->global_model ? run->alg->global_model(run) : run->global;
    rc = g ? fh_model_save_state(model_tmp, run->model, g, g + fh_model_nparams(run->model), shape, ini)
           : FH_ERR_RUNTIME;
  }
  rc = fh_error_agree(comm, rc);
  char status[9400];
  if (interrupted)
    snprintf(status, sizeof status, "interrupted: %s after round %d of %d; resume with: fedhpc run %s/config.ini --resume %s",
             fh_signal_name(stop_sig), done, R, run_dir, run_dir);
  else
    snprintf(status, sizeof status, rc == 0 ? "complete" : "failed: %s", fh_error_msg());
  int rc_p = fh_profile_write(run_dir, hist, &run->prof, status, comm);
  if (rc == 0) rc = fh_error_agree(comm, rc_p);
  if (is_root) {
    if (rc != 0) snprintf(status, sizeof status, "failed: %s", fh_error_msg());
    if (rc == 0 && !interrupted && fh_cfg_bool(cfg, "output.save_model") && rename(model_tmp, model_path) != 0)
      rc = FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", model_tmp, model_path, strerror(errno));
    if (rc != 0) {
      remove(model_tmp);
      snprintf(status, sizeof status, "failed: %s", fh_error_msg());
    }
    int rc_m = fh_metrics_close(mf, status);
    if (rc == 0 && rc_m != 0) { /* nothing may look complete without metrics.h5 */
      rc = rc_m;
      remove(model_path);
    }
    fh_run_folder_unlock(run_dir);
  }
  return fh_error_agree(comm, rc);
}
