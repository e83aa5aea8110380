/* arena.h — bump allocator: one arena per loaded job (or file), one free releases all.
 *
 * Allocation failure aborts with a message (out of memory is not a user error nmc can
 * report usefully, and every caller would otherwise need a path for it).
 * Pointers returned stay valid until nmc_arena_free().
 */
#ifndef NMC_ARENA_H
#define NMC_ARENA_H
#include <stddef.h>

typedef struct nmc_arena nmc_arena_t;

nmc_arena_t *nmc_arena_new(void);
void nmc_arena_free(nmc_arena_t *a);
/* Zeroed memory, aligned to 16 bytes. */
void *nmc_arena_alloc(nmc_arena_t *a, size_t size);
/* Copy of s[0..n) plus a terminating NUL. */
char *nmc_arena_strndup(nmc_arena_t *a, const char *s, size_t n);
char *nmc_arena_strdup(nmc_arena_t *a, const char *s);
/* printf into the arena. */
char *nmc_arena_printf(nmc_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Total bytes handed out (for tests and limits). */
size_t nmc_arena_used(const nmc_arena_t *a);

#endif
