/* arena.c — bump allocator in chained blocks; see arena.h. */
#include "arena.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_MIN (64 * 1024) /* small jobs fit in one block */

typedef struct block {
    struct block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} block_t;

struct nmc_arena {
    block_t *head;
    size_t total;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "nmc: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

nmc_arena_t *nmc_arena_new(void)
{
    nmc_arena_t *a = xmalloc(sizeof *a);
    a->head = NULL;
    a->total = 0;
    return a;
}

void nmc_arena_free(nmc_arena_t *a)
{
    if (!a) return;
    for (block_t *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(a);
}

void *nmc_arena_alloc(nmc_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    block_t *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > BLOCK_MIN ? size : BLOCK_MIN;
        if (b && cap < b->cap * 2 && b->cap * 2 <= (SIZE_MAX >> 2)) cap = b->cap * 2;
        block_t *nb = xmalloc(sizeof *nb + cap);
        nb->cap = cap;
        nb->used = 0;
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->total += size;
    memset(p, 0, size);
    return p;
}

char *nmc_arena_strndup(nmc_arena_t *a, const char *s, size_t n)
{
    char *p = nmc_arena_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *nmc_arena_strdup(nmc_arena_t *a, const char *s)
{
    return nmc_arena_strndup(a, s, strlen(s));
}

char *nmc_arena_printf(nmc_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return nmc_arena_strdup(a, "");
    char *p = nmc_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t nmc_arena_used(const nmc_arena_t *a) { return a->total; }
