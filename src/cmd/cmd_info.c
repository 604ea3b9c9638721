/* fedhpc info: linked library versions and the PAPI events this machine can
 * count (hardware presets need a PMU; VMs often have none). */
#include <papi.h>
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/versions.h"
#include "fl/algorithm.h"

static int can_count(const char *name) {
  int es = PAPI_NULL;
  if (PAPI_create_eventset(&es) != PAPI_OK) return 0;
  int ok = PAPI_add_named_event(es, name) == PAPI_OK;
  if (ok) {
    long long v;
    ok = PAPI_start(es) == PAPI_OK && PAPI_stop(es, &v) == PAPI_OK;
  }
  PAPI_cleanup_eventset(es);
  PAPI_destroy_eventset(&es);
  return ok;
}

int fh_cmd_info(int argc, char **argv) {
  (void)argc;
  (void)argv;
  if (fh_log_rank() != 0) return 0;
  int nranks;
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  printf("fedhpc build and machine\n");
  fh_versions_print();
  printf("  %-10s %d\n", "MPI ranks", nranks);
  printf("algorithms:");
  for (int i = 0; i < fh_algorithm_count(); i++) printf(" %s", fh_algorithm_at(i)->name);
  printf("\n");
  if (strcmp(fh_papi_version(), "unavailable") == 0) {
    printf("PAPI: library could not be initialised; runs use timers only\n");
    return 0;
  }
  const PAPI_hw_info_t *hw = PAPI_get_hardware_info();
  if (hw) printf("CPU: %s, %d cores\n", hw->model_string, hw->totalcpus);
  /* Preset events that this machine can really count (added and started). */
  int code = PAPI_PRESET_MASK, npreset = 0;
  printf("PAPI preset events this machine can count:");
  if (PAPI_enum_event(&code, PAPI_ENUM_FIRST) == PAPI_OK) {
    do {
      PAPI_event_info_t info;
      if (PAPI_get_event_info(code, &info) == PAPI_OK && info.count > 0 && can_count(info.symbol)) {
        printf(" %s", info.symbol);
        npreset++;
      }
    } while (PAPI_enum_event(&code, PAPI_PRESET_ENUM_AVAIL) == PAPI_OK);
  }
  printf(npreset ? "\n" : " none (no hardware counters: a VM without a PMU?)\n");
  static const char *const software[] = {"perf::TASK-CLOCK", "perf::PAGE-FAULTS", "perf::CONTEXT-SWITCHES",
                                         "perf::CPU-MIGRATIONS", "perf::CYCLES", "perf::INSTRUCTIONS"};
  printf("perf_event events:");
  for (size_t i = 0; i < sizeof software / sizeof software[0]; i++)
    printf(" %s=%s", software[i], can_count(software[i]) ? "yes" : "no");
  printf("\nname any of them in profile.papi_events (papi_native_avail lists all native events)\n");
  return 0;
}
