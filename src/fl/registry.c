/* The algorithms fedhpc knows: one line each. */
#include <string.h>

#include "fl/algorithm.h"

extern const fh_algorithm fh_alg_fedavg;
extern const fh_algorithm fh_alg_fedprox;
extern const fh_algorithm fh_alg_perfedavg;
extern const fh_algorithm fh_alg_scaffold;
extern const fh_algorithm fh_alg_local;
extern const fh_algorithm fh_alg_fstcbdg;
extern const fh_algorithm fh_alg_augfl;
extern const fh_algorithm fh_alg_pfedafm;
extern const fh_algorithm fh_alg_standalone;
extern const fh_algorithm fh_alg_lg_fedavg;
extern const fh_algorithm fh_alg_fml;
extern const fh_algorithm fh_alg_fedkd;
extern const fh_algorithm fh_alg_fedproto;
extern const fh_algorithm fh_alg_fedgh;
extern const fh_algorithm fh_alg_fd;

static const fh_algorithm *const registry[] = {
    &fh_alg_fedavg,
    &fh_alg_fedprox,
    &fh_alg_perfedavg,
    &fh_alg_scaffold,
    &fh_alg_local,
    &fh_alg_fstcbdg,
    &fh_alg_augfl,
    &fh_alg_pfedafm,
    &fh_alg_standalone,
    &fh_alg_lg_fedavg,
    &fh_alg_fml,
    &fh_alg_fedkd,
    &fh_alg_fedproto,
    &fh_alg_fedgh,
    &fh_alg_fd,
};
#define NALG ((int)(sizeof registry / sizeof registry[0]))

const fh_algorithm *fh_algorithm_find(const char *name) {
  for (int i = 0; i < NALG; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}

int fh_algorithm_count(void) { return NALG; }
const fh_algorithm *fh_algorithm_at(int i) { return registry[i]; }

const char *fh_algorithm_choices(void) {
  static char buf[512];
  if (buf[0] == '\0')
    for (int i = 0; i < NALG; i++) {
      if (i) strcat(buf, "|");
      strcat(buf, registry[i]->name);
    }
  return buf;
}
