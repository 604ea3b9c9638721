/* fedhpc run DECK [--set section.key=value ...] [--resume RUN_DIR] */
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/signals.h"
#include "fl/checkpoint.h"
#include "fl/run.h"
#include "fl/run_folder.h"

int fh_cmd_run(int argc, char **argv) {
  fh_config *cfg = NULL;
  const char *const opts[] = {"--resume", NULL};
  const char *vals[1] = {NULL};
  FH_TRY(fh_load_config_from_args(argc, argv, 1, &cfg, opts, vals));
  /* From here on SIGTERM/SIGUSR1 stop the run at the end of a round. */
  fh_signals_install();
  char resume[4096] = "";
  int rc = 0, round = 0;
  if (vals[0]) {
    snprintf(resume, sizeof resume, "%s", vals[0]);
    for (size_t n = strlen(resume); n > 1 && resume[n - 1] == '/'; n--) resume[n - 1] = '\0';
    rc = fh_checkpoint_check(cfg, resume, MPI_COMM_WORLD, &round);
  }
  /* The folder is locked before the run is set up (rank 0; the others wait
   * for the verdict): a second run on it refuses before it creates anything. */
  char dir[4096] = "";
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rc == 0) {
    if (resume[0]) snprintf(dir, sizeof dir, "%s", resume);
    else rc = fh_run_dir_path(cfg, dir, sizeof dir);
  }
  if (rc == 0 && rank == 0) rc = fh_run_folder_lock(cfg, dir);
  rc = fh_error_agree(MPI_COMM_WORLD, rc);
  fh_run *run = NULL;
  if (rc == 0) rc = fh_run_create_at(&run, cfg, MPI_COMM_WORLD, resume[0] ? resume : NULL);
  if (rc == 0) {
    run->resume = resume[0] != '\0';
    rc = fh_run_execute(run, NULL);
  }
  if (rank == 0 && dir[0]) fh_run_folder_unlock(dir); /* a run that failed before its end; else nothing */
  fh_run_free(run);
  fh_config_free(cfg);
  return rc;
}
