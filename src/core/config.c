/* Decks and --set overrides, checked against the registered key tables.
 *
 * Load order: defaults, then the deck, then each --set. A deck is read into
 * memory and handed to libinih one physical line at a time through our own
 * reader, so the reader always knows the line libinih is working on (Debian's
 * libinih is built without line numbers in the handler). The reader also checks
 * section headers as they go by, so an unknown section is reported at its
 * header even when no key follows it. Parsing stops at the first error. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"

#define MSG_MAX 768     /* one error message, before the "FILE:LINE: " prefix */
#define SHOWN_MAX 64    /* longer values are shortened in messages            */
#define SUGGEST_MAX 128 /* longer names are never compared for suggestions    */

/* A value after checking: the canonical text the dump writes, plus the parsed
 * form for its type. */
typedef struct {
  char *text;
  long long i;     /* FH_T_INT                      */
  double r;        /* FH_T_REAL                     */
  int b;           /* FH_T_BOOL                     */
  int n;           /* list length                   */
  long long *ints; /* FH_T_INTLIST [n]              */
  char **items;    /* FH_T_STRLIST [n + 1], NULL-terminated, into item_buf */
  char *item_buf;
} cfg_value;

typedef struct {
  const fh_key_spec *spec;
  char *section;     /* "run" of "run.rounds"      */
  const char *key;   /* "rounds", into spec->name  */
  cfg_value val;
  const char *origin; /* "default", "--set" or origin_buf */
  char *origin_buf;   /* "deck.ini:12"             */
  int deck_line;      /* 0 when not set by the deck */
} cfg_entry;

struct fh_config {
  int n;
  cfg_entry *entries;      /* [n], table order                       */
  cfg_entry **by_name;     /* [n], sorted by full name, for lookups  */
  int nsections;
  const char **sections;   /* distinct, in order of first appearance */
  char *deck_path;
};

/* ---- small helpers ----------------------------------------------------------- */

static _Noreturn void __attribute__((format(printf, 1, 2))) config_bug(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fedhpc: config: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (programming error)\n", stderr);
  va_end(ap);
  abort();
}

static char *dup_n(const char *s, size_t n) {
  char *d = fh_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *dup_str(const char *s) { return dup_n(s, strlen(s)); }

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = fh_malloc((size_t)len + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)len + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* A trimmed copy of s[0..n). */
static char *dup_trimmed(const char *s, size_t n) {
  while (n > 0 && isspace((unsigned char)*s)) s++, n--;
  while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
  return dup_n(s, n);
}

/* s for a message: shortened with "..." when long. */
static const char *shown(const char *s, char buf[SHOWN_MAX + 4]) {
  size_t n = strlen(s);
  if (n <= SHOWN_MAX) return s;
  memcpy(buf, s, SHOWN_MAX - 3);
  memcpy(buf + SHOWN_MAX - 3, "...", 4);
  return buf;
}

/* A range bound: integers without a fraction, reals in %g. */
static void format_bound(char *buf, size_t size, double x, int integral) {
  if (integral && fabs(x) < 1e15)
    snprintf(buf, size, "%.0f", x);
  else
    snprintf(buf, size, "%g", x);
}

static void format_range(char *buf, size_t size, const fh_key_spec *spec) {
  char lo[32], hi[32];
  int integral = spec->type != FH_T_REAL;
  format_bound(lo, sizeof lo, spec->min, integral);
  format_bound(hi, sizeof hi, spec->max, integral);
  snprintf(buf, size, "[%s, %s]", lo, hi);
}

/* The shortest %g text that reads back as exactly x. */
static char *format_real(double x) {
  char buf[40];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (strtod(buf, NULL) == x) break;
  }
  return dup_str(buf);
}

static const char *type_name(fh_type t) {
  switch (t) {
    case FH_T_INT: return "int";
    case FH_T_REAL: return "real";
    case FH_T_BOOL: return "bool";
    case FH_T_STRING: return "string";
    case FH_T_ENUM: return "enum";
    case FH_T_INTLIST: return "intlist";
    case FH_T_STRLIST: return "strlist";
  }
  return "?";
}

/* ---- suggestions ---------------------------------------------------------------- */

/* Levenshtein distance, ignoring case (a suggestion, never a match); strings that
 * differ only in case are 1 apart. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > SUGGEST_MAX || lb > SUGGEST_MAX) return INT_MAX;
  int row[SUGGEST_MAX + 1];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      int best = diag + cost;
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  int d = row[lb];
  return (d == 0 && strcmp(a, b) != 0) ? 1 : d;
}

/* Close enough to suggest: within max(2, len/3) edits of what was typed, and not
 * a complete rewrite of the candidate. */
static int is_close(int d, const char *typed, const char *candidate) {
  int len = (int)strlen(typed);
  int limit = len / 3 > 2 ? len / 3 : 2;
  return d <= limit && d < (int)strlen(candidate);
}

/* The registered key nearest to what was typed, or NULL. section: the section it
 * was found in (compare the bare key there, and full names), or NULL when the
 * name stands alone (compare it with bare keys of every section and with full
 * names). A bare key that exists exactly in another section counts as 1 edit. */
static const cfg_entry *nearest_key(const fh_config *cfg, const char *section, const char *key) {
  char full[2 * SUGGEST_MAX + 2];
  if (section)
    snprintf(full, sizeof full, "%s.%s", section, key);
  else
    snprintf(full, sizeof full, "%s", key);
  const cfg_entry *best = NULL;
  int best_d = INT_MAX;
  for (int k = 0; k < cfg->n; k++) {
    const cfg_entry *e = &cfg->entries[k];
    int d = INT_MAX;
    int dfull = edit_distance(full, e->spec->name);
    if (is_close(dfull, full, e->spec->name)) d = dfull;
    if (!section || strcmp(section, e->section) == 0) {
      int dkey = edit_distance(key, e->key);
      if (is_close(dkey, key, e->key) && dkey < d) d = dkey;
    }
    if (strcmp(key, e->key) == 0 && d > 1) d = 1;
    if (d < best_d) best_d = d, best = e;
  }
  return best;
}

static const char *nearest_section(const fh_config *cfg, const char *name) {
  const char *best = NULL;
  int best_d = INT_MAX;
  for (int s = 0; s < cfg->nsections; s++) {
    int d = edit_distance(name, cfg->sections[s]);
    if (is_close(d, name, cfg->sections[s]) && d < best_d) best_d = d, best = cfg->sections[s];
  }
  return best;
}

/* The choice of "a|b|c" nearest to typed, copied into buf; 0 if none is close. */
static int nearest_choice(const char *choices, const char *typed, char *buf, size_t size) {
  int best_d = INT_MAX;
  for (const char *c = choices; *c;) {
    size_t len = strcspn(c, "|");
    char one[SUGGEST_MAX + 1];
    if (len <= SUGGEST_MAX) {
      memcpy(one, c, len);
      one[len] = '\0';
      int d = edit_distance(typed, one);
      if (is_close(d, typed, one) && d < best_d) {
        best_d = d;
        snprintf(buf, size, "%s", one);
      }
    }
    c += len;
    if (*c == '|') c++;
  }
  return best_d != INT_MAX;
}

/* ---- values ------------------------------------------------------------------------ */

static void value_free(cfg_value *v) {
  free(v->text);
  free(v->ints);
  free(v->items);
  free(v->item_buf);
  memset(v, 0, sizeof *v);
}

/* A value that a deck line cannot hold would not survive the dump: libinih cuts a
 * value at a ';' that follows whitespace (or starts it), and a line ends at a
 * newline. */
static int check_writable(const char *name, const char *text, char *msg, size_t size) {
  char sb[SHOWN_MAX + 4];
  for (const char *p = text; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      snprintf(msg, size, "%s contains a control character (a value must fit on one line)", name);
      return -1;
    }
    if (c == ';' && (p == text || isspace((unsigned char)p[-1]))) {
      snprintf(msg, size, "%s = '%s' cannot be written in a deck: ';' after a space starts a comment",
               name, shown(text, sb));
      return -1;
    }
  }
  return 0;
}

static int parse_int(const char *s, long long *out, int *overflow) {
  if (!*s) return -1;
  char *end;
  errno = 0;
  *out = strtoll(s, &end, 10);
  if (end == s || *end != '\0') return -1;
  *overflow = errno == ERANGE;
  return 0;
}

static int in_range(double x, const fh_key_spec *spec) { return x >= spec->min && x <= spec->max; }

/* Splits a comma list into trimmed elements (an empty text is an empty list);
 * *has_empty tells whether an element is empty, as in "1,,2" or "1,". */
static char **split_list(const char *text, int *n_out, int *has_empty) {
  *n_out = 0;
  *has_empty = 0;
  if (!*text) return NULL;
  int n = 1;
  for (const char *p = text; *p; p++) n += *p == ',';
  char **elems = fh_calloc((size_t)n, sizeof *elems);
  const char *p = text;
  for (int k = 0; k < n; k++) {
    size_t len = strcspn(p, ",");
    elems[k] = dup_trimmed(p, len);
    *has_empty |= elems[k][0] == '\0';
    p += len + (p[len] == ',');
  }
  *n_out = n;
  return elems;
}

static void free_list(char **elems, int n) {
  for (int k = 0; k < n; k++) free(elems[k]);
  free(elems);
}

/* raw (untrimmed) -> *out for spec's type. Returns 0, or -1 with a message such
 * as "run.rounds = 'ten' is not an integer" in msg. Long on purpose: one case
 * per key type, each the whole syntax-and-range rule of that type next to the
 * others, so a rule and its message are read in one place. */
static int parse_value(const fh_key_spec *spec, const char *raw, cfg_value *out, char *msg,
                       size_t size) {
  memset(out, 0, sizeof *out);
  char *text = dup_trimmed(raw, strlen(raw));
  const char *name = spec->name;
  char sb[SHOWN_MAX + 4], range[80];
  int rc = 0;
  if (check_writable(name, text, msg, size) != 0) {
    free(text);
    return -1;
  }
  switch (spec->type) {
    case FH_T_INT: {
      int overflow = 0;
      if (parse_int(text, &out->i, &overflow) != 0) {
        snprintf(msg, size, "%s = '%s' is not an integer", name, shown(text, sb));
        rc = -1;
      } else if (overflow || !in_range((double)out->i, spec)) {
        format_range(range, sizeof range, spec);
        snprintf(msg, size, "%s = %s is out of range %s", name, shown(text, sb), range);
        rc = -1;
      } else {
        out->text = dup_printf("%lld", out->i);
      }
      break;
    }
    case FH_T_REAL: {
      char *end;
      out->r = *text ? strtod(text, &end) : 0.0;
      if (!*text || *end != '\0') {
        snprintf(msg, size, "%s = '%s' is not a number", name, shown(text, sb));
        rc = -1;
      } else if (!isfinite(out->r)) {
        snprintf(msg, size, "%s = '%s' is not a finite number", name, shown(text, sb));
        rc = -1;
      } else if (!in_range(out->r, spec)) {
        format_range(range, sizeof range, spec);
        snprintf(msg, size, "%s = %s is out of range %s", name, shown(text, sb), range);
        rc = -1;
      } else {
        out->text = format_real(out->r);
      }
      break;
    }
    case FH_T_BOOL: {
      static const char *const yes[] = {"true", "yes", "on", "1"};
      static const char *const no[] = {"false", "no", "off", "0"};
      out->b = -1;
      for (int k = 0; k < 4; k++) {
        if (strcasecmp(text, yes[k]) == 0) out->b = 1;
        if (strcasecmp(text, no[k]) == 0) out->b = 0;
      }
      if (out->b < 0) {
        snprintf(msg, size, "%s = '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", name,
                 shown(text, sb));
        rc = -1;
      } else {
        out->text = dup_str(out->b ? "true" : "false");
      }
      break;
    }
    case FH_T_STRING:
      out->text = text;
      text = NULL;
      break;
    case FH_T_ENUM: {
      int found = 0;
      size_t len = strlen(text);
      for (const char *c = spec->choices; *c && !found;) {
        size_t clen = strcspn(c, "|");
        found = clen == len && strncmp(c, text, len) == 0;
        c += clen;
        if (*c == '|') c++;
      }
      if (!found) {
        char near[SUGGEST_MAX + 1];
        if (nearest_choice(spec->choices, text, near, sizeof near))
          snprintf(msg, size, "%s = '%s' is not one of %s (did you mean '%s'?)", name,
                   shown(text, sb), spec->choices, near);
        else
          snprintf(msg, size, "%s = '%s' is not one of %s", name, shown(text, sb), spec->choices);
        rc = -1;
      } else {
        out->text = text;
        text = NULL;
      }
      break;
    }
    case FH_T_INTLIST:
    case FH_T_STRLIST: {
      int n, has_empty;
      char **elems = split_list(text, &n, &has_empty);
      if (has_empty) {
        snprintf(msg, size, "%s = '%s' has an empty element (write e.g. '1,2'; an empty value is an empty list)",
                 name, shown(text, sb));
        free_list(elems, n);
        rc = -1;
        break;
      }
      char eb[SHOWN_MAX + 4];
      if (spec->type == FH_T_INTLIST) {
        out->ints = fh_calloc((size_t)(n > 0 ? n : 1), sizeof *out->ints);
        for (int k = 0; k < n && rc == 0; k++) {
          int overflow = 0;
          if (parse_int(elems[k], &out->ints[k], &overflow) != 0) {
            snprintf(msg, size, "%s = '%s': element '%s' is not an integer", name, shown(text, sb),
                     shown(elems[k], eb));
            rc = -1;
          } else if (overflow || !in_range((double)out->ints[k], spec)) {
            format_range(range, sizeof range, spec);
            snprintf(msg, size, "%s = '%s': element %s is out of range %s", name, shown(text, sb),
                     shown(elems[k], eb), range);
            rc = -1;
          }
        }
      } else {
        for (int k = 0; k < n && rc == 0; k++) {
          if (strpbrk(elems[k], " \t")) {
            snprintf(msg, size, "%s = '%s': element '%s' contains a space (separate elements with commas)",
                     name, shown(text, sb), shown(elems[k], eb));
            rc = -1;
          }
        }
      }
      if (rc == 0) {
        /* Canonical text: the elements joined by ",". */
        size_t total = 1;
        for (int k = 0; k < n; k++) total += strlen(elems[k]) + 1;
        out->text = fh_malloc(total);
        out->text[0] = '\0';
        size_t at = 0;
        for (int k = 0; k < n; k++) at += (size_t)sprintf(out->text + at, k ? ",%s" : "%s", elems[k]);
        out->n = n;
        if (spec->type == FH_T_STRLIST) {
          out->item_buf = dup_str(out->text);
          out->items = fh_calloc((size_t)n + 1, sizeof *out->items);
          char *p = out->item_buf;
          for (int k = 0; k < n; k++) {
            out->items[k] = p;
            p += strlen(elems[k]);
            *p++ = '\0';
          }
        }
      }
      free_list(elems, n);
      break;
    }
  }
  free(text);
  if (rc != 0) value_free(out);
  return rc;
}

/* ---- the registry --------------------------------------------------------------- */

static int by_name_cmp(const void *a, const void *b) {
  const cfg_entry *x = *(const cfg_entry *const *)a, *y = *(const cfg_entry *const *)b;
  return strcmp(x->spec->name, y->spec->name);
}

static int name_key_cmp(const void *name, const void *elem) {
  return strcmp((const char *)name, (*(const cfg_entry *const *)elem)->spec->name);
}

static cfg_entry *find_entry(const fh_config *cfg, const char *name) {
  if (cfg->n == 0) return NULL;
  cfg_entry **hit = bsearch(name, cfg->by_name, (size_t)cfg->n, sizeof *cfg->by_name, name_key_cmp);
  return hit ? *hit : NULL;
}

static int is_known_section(const fh_config *cfg, const char *name) {
  for (int s = 0; s < cfg->nsections; s++)
    if (strcmp(cfg->sections[s], name) == 0) return 1;
  return 0;
}

static void check_spec(const fh_key_spec *spec) {
  const char *name = spec->name;
  const char *dot = strchr(name, '.');
  if (!dot || dot == name || !dot[1] || strpbrk(name, " \t=:;#[]"))
    config_bug("key name '%s' is not of the form section.key", name);
  if ((unsigned)spec->type > FH_T_STRLIST) config_bug("key %s has an unknown type %d", name, (int)spec->type);
  if (!spec->dflt) config_bug("key %s has no default", name);
  if (spec->type == FH_T_INT || spec->type == FH_T_REAL || spec->type == FH_T_INTLIST) {
    if (!(spec->min <= spec->max)) config_bug("key %s has min > max", name);
  }
  if (spec->type == FH_T_ENUM) {
    const char *c = spec->choices;
    if (!c || !*c || c[0] == '|' || c[strlen(c) - 1] == '|' || strstr(c, "||"))
      config_bug("key %s: enum choices '%s' are not of the form a|b|c", name, c ? c : "(null)");
  }
}

/* A config holding the defaults of every key in the tables. Aborts on a bad
 * table: a malformed spec, a bad default, or a name declared twice. The same
 * table passed twice is one declaration and is taken once. NULL tables are
 * skipped. */
static fh_config *config_from_tables(const fh_key_spec *const *tables, int ntables) {
  fh_config *cfg = fh_calloc(1, sizeof *cfg);
  int total = 0;
  for (int t = 0; t < ntables; t++) {
    if (!tables[t]) continue;
    int seen = 0;
    for (int u = 0; u < t; u++) seen |= tables[u] == tables[t];
    if (seen) continue;
    for (const fh_key_spec *s = tables[t]; s->name; s++) total++;
  }
  cfg->entries = fh_calloc((size_t)(total > 0 ? total : 1), sizeof *cfg->entries);
  cfg->by_name = fh_calloc((size_t)(total > 0 ? total : 1), sizeof *cfg->by_name);
  cfg->sections = fh_calloc((size_t)(total > 0 ? total : 1), sizeof *cfg->sections);
  for (int t = 0; t < ntables; t++) {
    if (!tables[t]) continue;
    int seen = 0;
    for (int u = 0; u < t; u++) seen |= tables[u] == tables[t];
    if (seen) continue;
    for (const fh_key_spec *s = tables[t]; s->name; s++) {
      check_spec(s);
      cfg_entry *e = &cfg->entries[cfg->n];
      e->spec = s;
      const char *dot = strchr(s->name, '.');
      e->section = dup_n(s->name, (size_t)(dot - s->name));
      e->key = dot + 1;
      e->origin = "default";
      char msg[MSG_MAX];
      if (parse_value(s, s->dflt, &e->val, msg, sizeof msg) != 0) config_bug("bad default: %s", msg);
      cfg->by_name[cfg->n] = e;
      cfg->n++;
      if (!is_known_section(cfg, e->section)) cfg->sections[cfg->nsections++] = e->section;
    }
  }
  qsort(cfg->by_name, (size_t)cfg->n, sizeof *cfg->by_name, by_name_cmp);
  for (int k = 1; k < cfg->n; k++)
    if (strcmp(cfg->by_name[k - 1]->spec->name, cfg->by_name[k]->spec->name) == 0)
      config_bug("key %s is declared in two tables", cfg->by_name[k]->spec->name);
  return cfg;
}

void fh_config_free(fh_config *cfg) {
  if (!cfg) return;
  for (int k = 0; k < cfg->n; k++) {
    value_free(&cfg->entries[k].val);
    free(cfg->entries[k].section);
    free(cfg->entries[k].origin_buf);
  }
  free(cfg->entries);
  free(cfg->by_name);
  free(cfg->sections);
  free(cfg->deck_path);
  free(cfg);
}

static void entry_set(cfg_entry *e, cfg_value *v, const char *origin, char *origin_buf) {
  value_free(&e->val);
  e->val = *v;
  free(e->origin_buf);
  e->origin_buf = origin_buf;
  e->origin = origin_buf ? origin_buf : origin;
}

/* ---- the deck ------------------------------------------------------------------------ */

typedef struct {
  fh_config *cfg;
  const char *path;
  const char *text; /* the whole deck, NUL-terminated */
  size_t len, pos;
  int lineno;       /* the physical line libinih is working on */
  int err_line;     /* 0: no error yet */
  char err[MSG_MAX];
  char section[128]; /* the last [section] header: for the lines read here */
} deck_parse;

static void deck_fail(deck_parse *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void deck_fail(deck_parse *d, const char *fmt, ...) {
  if (d->err_line) return;
  d->err_line = d->lineno;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
}

/* Checks a "[section]" line the way libinih reads it: ']' must come before any
 * inline comment (';' after whitespace); otherwise libinih reports the line. */
static void deck_check_header(deck_parse *d, const char *line) {
  const char *s = line;
  if (d->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
  while (isspace((unsigned char)*s)) s++;
  if (*s != '[') return;
  const char *end = s + 1;
  int was_space = 0;
  while (*end && *end != ']' && !(was_space && *end == ';')) {
    was_space = isspace((unsigned char)*end);
    end++;
  }
  if (*end != ']') return;
  char *name = dup_trimmed(s + 1, (size_t)(end - s - 1));
  snprintf(d->section, sizeof d->section, "%s", name);
  if (!is_known_section(d->cfg, name)) {
    char sb[SHOWN_MAX + 4];
    const char *near = nearest_section(d->cfg, name);
    if (near)
      deck_fail(d, "unknown section [%s] (did you mean [%s]?)", shown(name, sb), near);
    else
      deck_fail(d, "unknown section [%s]", shown(name, sb));
  }
  free(name);
}

static int deck_on_key(void *user, const char *section_raw, const char *name, const char *value);

/* A line too long for libinih's buffer, read as libinih reads one: a comment
 * (';' or '#' first), or "name = value" (or "name: value") with an inline
 * comment after " ;" dropped, under the last [section]. */
static void deck_long_line(deck_parse *d, const char *start, size_t len) {
  char *line = dup_trimmed(start, len);
  if (line[0] == ';' || line[0] == '#' || line[0] == '\0') {
    free(line);
    return;
  }
  if (line[0] == '[') {
    free(line);
    deck_fail(d, "section header is %zu characters long: too long", len);
    return;
  }
  for (char *c = line + 1; *c; c++)
    if (*c == ';' && isspace((unsigned char)c[-1])) {
      *c = '\0';
      break;
    }
  char *eq = line + strcspn(line, "=:");
  if (!*eq) {
    char sb[SHOWN_MAX + 4];
    deck_fail(d, "expected 'key = value' or '[section]', found '%s'", shown(line, sb));
    free(line);
    return;
  }
  *eq = '\0';
  char *name = dup_trimmed(line, strlen(line)), *value = dup_trimmed(eq + 1, strlen(eq + 1));
  deck_on_key(d, d->section, name, value);
  free(name);
  free(value);
  free(line);
}

/* ini_reader: hands libinih one physical line per call, so that lineno is the
 * line of whatever the handler sees next. Returns NULL (end of input) after the
 * first error. */
static char *deck_read_line(char *str, int num, void *stream) {
  deck_parse *d = stream;
  if (d->err_line || d->pos >= d->len) return NULL;
  const char *start = d->text + d->pos;
  const char *nl = memchr(start, '\n', d->len - d->pos);
  size_t len = nl ? (size_t)(nl - start) : d->len - d->pos;
  d->pos += len + (nl != NULL);
  d->lineno++;
  if (len > 0 && start[len - 1] == '\r') len--;
  if (memchr(start, '\0', len)) {
    deck_fail(d, "line contains a NUL byte (is the deck a text file?)");
    return NULL;
  }
  /* libinih needs room for "\r\n\0" after the text: a longer line (a long
   * value, such as a deep data.path in a run's own config.ini, or a long
   * comment) is read here, and libinih sees an empty line in its place. */
  size_t limit = num > 3 ? (size_t)num - 3 : 0;
  if (len > limit) {
    deck_long_line(d, start, len);
    if (d->err_line) return NULL;
    str[0] = '\n';
    str[1] = '\0';
    return str;
  }
  memcpy(str, start, len);
  str[len] = '\n';
  str[len + 1] = '\0';
  deck_check_header(d, str);
  return d->err_line ? NULL : str;
}

/* ini_handler: one "name = value" of the deck. Always returns 1: our errors are
 * recorded in d and stop the reader; libinih's own count only syntax errors. */
static int deck_on_key(void *user, const char *section_raw, const char *name, const char *value) {
  deck_parse *d = user;
  if (d->err_line) return 1;
  fh_config *cfg = d->cfg;
  char *section = dup_trimmed(section_raw, strlen(section_raw));
  char sb[SHOWN_MAX + 4];
  if (!*section) {
    const cfg_entry *near = nearest_key(cfg, NULL, name);
    if (near)
      deck_fail(d, "key '%s' is outside any section (did you mean '%s' under [%s]?)", shown(name, sb),
                near->key, near->section);
    else
      deck_fail(d, "key '%s' is outside any section (put it under its [section])", shown(name, sb));
  } else if (!is_known_section(cfg, section)) {
    /* Headers are checked by the reader; this catches anything it missed. */
    deck_fail(d, "unknown section [%s]", shown(section, sb));
  } else {
    char *full = dup_printf("%s.%s", section, name);
    cfg_entry *e = find_entry(cfg, full);
    if (!e) {
      const cfg_entry *near = nearest_key(cfg, section, name);
      if (near)
        deck_fail(d, "unknown key '%s' in section [%s] (did you mean '%s'?)", shown(name, sb), section,
                  near->spec->name);
      else
        deck_fail(d, "unknown key '%s' in section [%s]", shown(name, sb), section);
    } else if (e->deck_line) {
      deck_fail(d, "%s is given twice in the deck (first on line %d); keep one", e->spec->name,
                e->deck_line);
    } else {
      cfg_value v;
      char msg[MSG_MAX];
      if (parse_value(e->spec, value, &v, msg, sizeof msg) != 0) {
        if (strstr(value, " #") || strstr(value, "\t#"))
          deck_fail(d, "%s (comments after a value start with ';', not '#')", msg);
        else
          deck_fail(d, "%s", msg);
      } else {
        e->deck_line = d->lineno;
        entry_set(e, &v, NULL, dup_printf("%s:%d", d->path, d->lineno));
      }
    }
    free(full);
  }
  free(section);
  return 1;
}

/* The physical line `lineno` (1-based) of text, trimmed, newly allocated. */
static char *deck_line_text(const char *text, size_t len, int lineno) {
  const char *p = text, *end = text + len;
  for (int k = 1; k < lineno && p < end; k++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end;
  }
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  return dup_trimmed(p, nl ? (size_t)(nl - p) : (size_t)(end - p));
}

static int read_whole_file(const char *path, char **text, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return FH_FAIL(FH_ERR_CONFIG, "%s: cannot open deck: %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = fh_malloc(cap);
  for (;;) {
    if (n + 1 >= cap) {
      cap *= 2;
      char *grown = realloc(buf, cap);
      if (!grown) {
        free(buf);
        fclose(f);
        return FH_FAIL(FH_ERR_CONFIG, "%s: deck does not fit in memory", path);
      }
      buf = grown;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  int err = errno;
  fclose(f);
  if (bad) {
    free(buf);
    return FH_FAIL(FH_ERR_CONFIG, "%s: cannot read deck: %s", path, strerror(err));
  }
  buf[n] = '\0';
  *text = buf;
  *len = n;
  return 0;
}

static int load_deck(fh_config *cfg, const char *path) {
  deck_parse d;
  memset(&d, 0, sizeof d);
  d.cfg = cfg;
  d.path = path;
  char *text = NULL;
  FH_TRY(read_whole_file(path, &text, &d.len));
  d.text = text;
  /* An indented line is a line of its own, not the continuation of the value
   * above it: decks often indent keys under their section. */
  bool multiline = ini_allow_multiline;
  ini_allow_multiline = false;
  int syntax_line = ini_parse_stream(deck_read_line, &d, deck_on_key, &d);
  ini_allow_multiline = multiline;

  int rc = 0;
  if (d.err_line && (syntax_line <= 0 || d.err_line <= syntax_line)) {
    rc = FH_FAIL(FH_ERR_CONFIG, "%s:%d: %s", path, d.err_line, d.err);
  } else if (syntax_line > 0) {
    char *line = deck_line_text(text, d.len, syntax_line);
    char sb[SHOWN_MAX + 4];
    if (line[0] == '[')
      rc = FH_FAIL(FH_ERR_CONFIG, "%s:%d: section header '%s' has no closing ']'", path, syntax_line,
                   shown(line, sb));
    else
      rc = FH_FAIL(FH_ERR_CONFIG, "%s:%d: expected 'key = value' or '[section]', found '%s'", path,
                   syntax_line, shown(line, sb));
    free(line);
  } else if (syntax_line < 0) {
    rc = FH_FAIL(FH_ERR_CONFIG, "%s: libinih could not parse the deck (code %d)", path, syntax_line);
  }
  free(text);
  return rc;
}

/* ---- --set ------------------------------------------------------------------------------ */

static int apply_set(fh_config *cfg, const char *set) {
  char sb[SHOWN_MAX + 4], nb[SHOWN_MAX + 4];
  const char *eq = strchr(set, '=');
  char *name = dup_trimmed(set, eq ? (size_t)(eq - set) : strlen(set));
  const char *dot = strchr(name, '.');
  int rc = 0;
  if (!eq || !dot || dot == name || !dot[1]) {
    const cfg_entry *near = eq && *name ? nearest_key(cfg, NULL, name) : NULL;
    /* not a --set at all: a bad command line (exit 2), not a bad deck */
    if (near)
      rc = FH_FAIL(FH_ERR_USAGE, "--set %s: expected section.key=value (did you mean '%s'?)", shown(set, sb),
                   near->spec->name);
    else
      rc = FH_FAIL(FH_ERR_USAGE, "--set %s: expected section.key=value", shown(set, sb));
  } else {
    cfg_entry *e = find_entry(cfg, name);
    if (!e) {
      char *section = dup_n(name, (size_t)(dot - name));
      const cfg_entry *near = nearest_key(cfg, is_known_section(cfg, section) ? section : NULL,
                                          is_known_section(cfg, section) ? dot + 1 : name);
      if (!near) near = nearest_key(cfg, NULL, dot + 1);
      if (near)
        rc = FH_FAIL(FH_ERR_CONFIG, "--set %s: unknown key '%s' (did you mean '%s'?)", shown(set, sb),
                     shown(name, nb), near->spec->name);
      else
        rc = FH_FAIL(FH_ERR_CONFIG, "--set %s: unknown key '%s'", shown(set, sb), shown(name, nb));
      free(section);
    } else {
      cfg_value v;
      char msg[MSG_MAX];
      if (parse_value(e->spec, eq + 1, &v, msg, sizeof msg) != 0)
        rc = FH_FAIL(FH_ERR_CONFIG, "--set %s: %s", shown(set, sb), msg);
      else
        entry_set(e, &v, "--set", NULL);
    }
  }
  free(name);
  return rc;
}

/* ---- public ------------------------------------------------------------------------------ */

int fh_config_load(fh_config **out, const char *path, const char *const *sets, int nsets,
                   const fh_key_spec *const *tables, int ntables) {
  *out = NULL;
  fh_config *cfg = config_from_tables(tables, ntables);
  int rc = 0;
  if (path) {
    cfg->deck_path = dup_str(path);
    rc = load_deck(cfg, path);
  }
  for (int k = 0; k < nsets && rc == 0; k++) rc = apply_set(cfg, sets[k]);
  if (rc != 0) {
    fh_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

static const cfg_entry *entry_or_die(const fh_config *cfg, const char *name, fh_type t1, fh_type t2) {
  if (!cfg) config_bug("key %s read from a NULL config", name ? name : "(null)");
  const cfg_entry *e = name ? find_entry(cfg, name) : NULL;
  if (!e) config_bug("key %s is not registered", name ? name : "(null)");
  if (e->spec->type != t1 && e->spec->type != t2)
    config_bug("key %s is %s, read as %s", name, type_name(e->spec->type), type_name(t1));
  return e;
}

long long fh_cfg_int(const fh_config *cfg, const char *name) {
  return entry_or_die(cfg, name, FH_T_INT, FH_T_INT)->val.i;
}

double fh_cfg_real(const fh_config *cfg, const char *name) {
  return entry_or_die(cfg, name, FH_T_REAL, FH_T_REAL)->val.r;
}

int fh_cfg_bool(const fh_config *cfg, const char *name) {
  return entry_or_die(cfg, name, FH_T_BOOL, FH_T_BOOL)->val.b;
}

const char *fh_cfg_str(const fh_config *cfg, const char *name) {
  return entry_or_die(cfg, name, FH_T_STRING, FH_T_ENUM)->val.text;
}

int fh_cfg_enum(const fh_config *cfg, const char *name) {
  const cfg_entry *e = entry_or_die(cfg, name, FH_T_ENUM, FH_T_ENUM);
  const char *value = e->val.text;
  const size_t len = strlen(value);
  int i = 0;
  for (const char *p = e->spec->choices; *p; i++) {
    const char *bar = strchr(p, '|');
    const size_t l = bar ? (size_t)(bar - p) : strlen(p);
    if (l == len && strncmp(p, value, l) == 0) return i;
    if (!bar) break;
    p = bar + 1;
  }
  config_bug("key %s holds '%s', not one of its choices", name, value);
  return -1;
}

int fh_cfg_intlist(const fh_config *cfg, const char *name, long long *out, int max) {
  const cfg_entry *e = entry_or_die(cfg, name, FH_T_INTLIST, FH_T_INTLIST);
  for (int k = 0; out && k < e->val.n && k < max; k++) out[k] = e->val.ints[k];
  return e->val.n;
}

int fh_cfg_strlist(const fh_config *cfg, const char *name, const char *const **items) {
  const cfg_entry *e = entry_or_die(cfg, name, FH_T_STRLIST, FH_T_STRLIST);
  if (items) *items = (const char *const *)e->val.items;
  return e->val.n;
}

const char *fh_cfg_origin(const fh_config *cfg, const char *name) {
  if (!cfg) config_bug("origin of %s asked of a NULL config", name ? name : "(null)");
  const cfg_entry *e = name ? find_entry(cfg, name) : NULL;
  if (!e) config_bug("key %s is not registered", name ? name : "(null)");
  return e->origin;
}

const char *fh_cfg_deck_path(const fh_config *cfg) { return cfg->deck_path; }

char *fh_config_dump(const fh_config *cfg) {
  size_t cap = 1;
  for (int k = 0; k < cfg->n; k++) cap += strlen(cfg->entries[k].key) + strlen(cfg->entries[k].val.text) + 4;
  for (int s = 0; s < cfg->nsections; s++) cap += strlen(cfg->sections[s]) + 4;
  char *out = fh_malloc(cap);
  size_t at = 0;
  out[0] = '\0';
  for (int s = 0; s < cfg->nsections; s++) {
    at += (size_t)sprintf(out + at, "%s[%s]\n", s ? "\n" : "", cfg->sections[s]);
    for (int k = 0; k < cfg->n; k++) {
      const cfg_entry *e = &cfg->entries[k];
      if (strcmp(e->section, cfg->sections[s]) != 0) continue;
      if (e->val.text[0])
        at += (size_t)sprintf(out + at, "%s = %s\n", e->key, e->val.text);
      else
        at += (size_t)sprintf(out + at, "%s =\n", e->key);
    }
  }
  return out;
}

/* What a key accepts, for help: its range, its choices, or nothing. */
static void format_limit(char *buf, size_t size, const fh_key_spec *s) {
  buf[0] = '\0';
  if (s->type == FH_T_INT || s->type == FH_T_REAL || s->type == FH_T_INTLIST)
    format_range(buf, size, s);
  else if (s->type == FH_T_ENUM)
    snprintf(buf, size, "%s", s->choices);
}

void fh_config_write_help(FILE *out, const fh_key_spec *const *tables, int ntables) {
  fh_config *cfg = config_from_tables(tables, ntables);
  /* Columns: key, type, default, range or choices, help. */
  int wkey = 3, wtype = 4, wdflt = 7, wlimit = 0;
  char limit[160];
  for (int k = 0; k < cfg->n; k++) {
    const cfg_entry *e = &cfg->entries[k];
    const fh_key_spec *s = e->spec;
    int len = (int)strlen(e->key);
    if (len > wkey) wkey = len;
    len = (int)strlen(type_name(s->type));
    if (len > wtype) wtype = len;
    len = s->dflt[0] ? (int)strlen(s->dflt) : 2;
    if (len > wdflt) wdflt = len;
  }
  for (int k = 0; k < cfg->n; k++) {
    format_limit(limit, sizeof limit, cfg->entries[k].spec);
    if ((int)strlen(limit) > wlimit) wlimit = (int)strlen(limit);
  }
  fprintf(out, "Deck keys, by section. Set them in the deck or with --set section.key=value.\n");
  for (int sec = 0; sec < cfg->nsections; sec++) {
    fprintf(out, "\n[%s]\n", cfg->sections[sec]);
    for (int k = 0; k < cfg->n; k++) {
      const cfg_entry *e = &cfg->entries[k];
      if (strcmp(e->section, cfg->sections[sec]) != 0) continue;
      const fh_key_spec *s = e->spec;
      format_limit(limit, sizeof limit, s);
      fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wkey, e->key, wtype, type_name(s->type), wdflt,
              s->dflt[0] ? s->dflt : "\"\"", wlimit, limit, s->help ? s->help : "");
    }
  }
  fh_config_free(cfg);
}

void fh_config_print_help(const fh_key_spec *const *tables, int ntables) {
  fh_config_write_help(stdout, tables, ntables);
}

/* ---- the pairs of a dumped config ----------------------------------------------- */

int fh_config_pairs(const char *text, fh_cfg_pair **out) {
  int n = 0, cap = 64;
  fh_cfg_pair *kv = fh_malloc((size_t)cap * sizeof *kv);
  char section[128] = "";
  const char *p = text;
  while (*p) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char *line = fh_malloc(len + 1); /* any length: a value may be long */
    memcpy(line, p, len);
    line[len] = '\0';
    p += len + (end ? 1 : 0);
    if (line[0] == '[') {
      char *close = strchr(line, ']');
      if (close) *close = '\0';
      snprintf(section, sizeof section, "%.127s", line + 1);
      free(line);
      continue;
    }
    char *eq = strstr(line, " =");
    if (!eq || !line[0]) {
      free(line);
      continue;
    }
    *eq = '\0';
    const char *val = eq + 2;
    while (*val == ' ') val++;
    if (n == cap) {
      cap *= 2;
      fh_cfg_pair *grown = fh_malloc((size_t)cap * sizeof *grown);
      memcpy(grown, kv, (size_t)n * sizeof *kv);
      free(kv);
      kv = grown;
    }
    size_t klen = strlen(section) + strlen(line) + 2;
    kv[n].key = fh_malloc(klen);
    snprintf(kv[n].key, klen, "%s.%s", section, line);
    kv[n].val = fh_malloc(strlen(val) + 1);
    memcpy(kv[n].val, val, strlen(val) + 1);
    n++;
    free(line);
  }
  *out = kv;
  return n;
}

void fh_config_pairs_free(fh_cfg_pair *kv, int n) {
  for (int i = 0; i < n; i++) free(kv[i].key), free(kv[i].val);
  free(kv);
}

const char *fh_config_pairs_get(const fh_cfg_pair *kv, int n, const char *key) {
  for (int i = 0; i < n; i++)
    if (strcmp(kv[i].key, key) == 0) return kv[i].val;
  return NULL;
}
