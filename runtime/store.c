/* store.c — the local store of Model Entities and FileSets (see store.h for the layout),
 * plus the atomic-write helpers every nmc writer uses. What belongs here: names, the
 * on-disk layout, import (by reference or copy), entity.json, resolve and list. Model
 * validation itself is model_config.c and safetensors.c; the CLI is cmd_store.c. */
#include "store.h"
#include "json.h"
#include "model_config.h"
#include "safetensors.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct nmc_store {
    nmc_arena_t *arena; /* every string handed out */
    char *home;         /* absolute */
};

static const char *const KIND_DIR[] = {"models", "filesets"};
static const char *const KIND_WORD[] = {"model", "fileset"};

/* Deep directory trees in a dataset are fine; a symlink loop is not. */
#define COPY_MAX_DEPTH 32

/* ---- atomic files ------------------------------------------------------------------------ */
static void io_err(nmc_diags_t *d, const char *path, const char *what)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "io-error", path, 0, 0, 0, "cannot %s: %s",
                                 what, strerror(errno));
    nmc_diag_set_help(r, "check the path, its permissions and free disk space");
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) abort();
    return p;
}

static void fsync_dir_of(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int nmc_atomic_begin(nmc_atomic_file_t *af, const char *path, nmc_diags_t *d)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 16;
    af->tmp = malloc(n);
    if (!af->tmp) abort();
    snprintf(af->tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        io_err(d, path, "create a temporary file beside it");
        free(af->tmp);
        af->tmp = NULL;
        return -1;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; these are ordinary shared files */
    af->f = fdopen(fd, "wb");
    if (!af->f) abort();
    af->path = xstrdup(path);
    return 0;
}

int nmc_atomic_commit(nmc_atomic_file_t *af, nmc_diags_t *d)
{
    bool ok = fflush(af->f) == 0 && !ferror(af->f) && fsync(fileno(af->f)) == 0;
    if (fclose(af->f) != 0) ok = false;
    af->f = NULL;
    if (ok && rename(af->tmp, af->path) == 0) {
        fsync_dir_of(af->path);
        free(af->tmp);
        free(af->path);
        af->tmp = af->path = NULL;
        return 0;
    }
    io_err(d, af->path, "write");
    nmc_atomic_abort(af);
    return -1;
}

void nmc_atomic_abort(nmc_atomic_file_t *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

/* ---- open / home ------------------------------------------------------------------------- */
static char *absolute(nmc_arena_t *a, const char *p)
{
    if (p[0] == '/') return nmc_arena_strdup(a, p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return nmc_arena_strdup(a, p);
    return nmc_arena_printf(a, "%s/%s", cwd, p);
}

int nmc_store_open(const char *home, nmc_store_t **out, nmc_diags_t *d)
{
    *out = NULL;
    const char *env = getenv("NMC_HOME"), *xdg = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
    nmc_arena_t *a = nmc_arena_new();
    char *dir = NULL;
    if (home && *home) dir = absolute(a, home);
    else if (env && *env) dir = absolute(a, env);
    else if (xdg && xdg[0] == '/') dir = nmc_arena_printf(a, "%s/nmc", xdg); /* XDG: absolute only */
    else if (h && *h) dir = nmc_arena_printf(a, "%s/.local/share/nmc", h);
    if (!dir) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "store-home", NULL, 0, 0, 0,
                                     "cannot locate the nmc store: NMC_HOME, XDG_DATA_HOME and "
                                     "HOME are all unset");
        nmc_diag_set_help(r, "set NMC_HOME to a directory, e.g. export NMC_HOME=$PWD/.nmc");
        nmc_arena_free(a);
        return -1;
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = '\0';
    nmc_store_t *s = nmc_arena_alloc(a, sizeof *s);
    s->arena = a;
    s->home = dir;
    *out = s;
    return 0;
}

void nmc_store_close(nmc_store_t *s)
{
    if (s) nmc_arena_free(s->arena); /* s itself lives in the arena */
}

const char *nmc_store_home(const nmc_store_t *s) { return s->home; }

/* ---- names ------------------------------------------------------------------------------- */
static const char *NAME_HELP =
    "a name is `name` or `workspace/name`; each part is 1-128 characters from "
    "[A-Za-z0-9._-] and does not start with '.'";

static nmc_diag_t *bad_name(nmc_diags_t *d, const char *what, const char *field,
                            const char *ref, const char *why)
{
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "store-invalid-name", NULL, 0, 0, 0,
                                 "%s: invalid %s name \"%s\": %s", field, what, ref, why);
    nmc_diag_set_help(r, "%s", NAME_HELP);
    return r;
}

/* One segment; NULL when fine, else the reason. */
static const char *segment_problem(const char *s, size_t n, char *buf, size_t cap)
{
    if (n == 0) return "it has an empty part (a leading, trailing or doubled '/')";
    if (n > NMC_STORE_NAME_MAX) return "a part is longer than 128 characters";
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return "'.' and '..' would point outside the entity's place in the store";
    if (s[0] == '.') return "a part starts with '.' (reserved for the store's temporary files)";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            if (c >= 0x20 && c < 0x7f) snprintf(buf, cap, "character '%c' is not allowed", c);
            else snprintf(buf, cap, "byte 0x%02x is not allowed", c);
            return buf;
        }
    }
    return NULL;
}

int nmc_store_parse_ref(const char *ref, const char *what, const char *field,
                        nmc_store_ref_t *out, nmc_diags_t *d)
{
    memset(out, 0, sizeof *out);
    char buf[64];
    if (!ref || !*ref) return bad_name(d, what, field, "", "it is empty"), -1;
    if (ref[0] == '/') return bad_name(d, what, field, ref, "absolute paths are not names"), -1;
    const char *slash = strchr(ref, '/');
    if (slash && strchr(slash + 1, '/'))
        return bad_name(d, what, field, ref, "it has more than one '/' (only workspace/name)"), -1;
    const char *ws = slash ? ref : NMC_STORE_DEFAULT_WORKSPACE;
    size_t wn = slash ? (size_t)(slash - ref) : strlen(ws);
    const char *nm = slash ? slash + 1 : ref;
    const char *why = segment_problem(ws, wn, buf, sizeof buf);
    if (!why) why = segment_problem(nm, strlen(nm), buf, sizeof buf);
    if (why) return bad_name(d, what, field, ref, why), -1;
    memcpy(out->workspace, ws, wn);
    strcpy(out->name, nm);
    return 0;
}

/* ---- filesystem helpers -------------------------------------------------------------- */
static int mkdir_p(const char *path, nmc_diags_t *d)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; rc == 0; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            io_err(d, p, "create directory");
            rc = -1;
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct {
    nmc_arena_t *a;
    const char *root;     /* realpath of the import source (symlinks must stay inside) */
    int64_t files, bytes;
    nmc_diags_t *d;
} copy_t;

static int copy_file(copy_t *c, const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return io_err(c->d, src, "read"), -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return io_err(c->d, dst, "create"), -1;
    }
    enum { CHUNK = 1 << 16 }; /* 64 KiB: large enough for sequential throughput */
    char *buf = malloc(CHUNK);
    if (!buf) abort();
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, CHUNK)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                io_err(c->d, dst, "write");
                rc = -1;
                break;
            }
            off += w;
            c->bytes += w;
        }
        if (rc) break;
    }
    if (n < 0) io_err(c->d, src, "read"), rc = -1;
    if (rc == 0 && fsync(out) != 0) io_err(c->d, dst, "fsync"), rc = -1;
    free(buf);
    close(in);
    close(out);
    c->files++;
    return rc;
}

static bool inside(const char *root, const char *p)
{
    size_t n = strlen(root);
    return strncmp(root, p, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

static int copy_tree(copy_t *c, const char *src, const char *dst, int depth);

/* Copy one directory entry (file, directory, or a symlink resolved inside the root). */
static int copy_entry(copy_t *c, const char *src, const char *dst, int depth)
{
    struct stat sb;
    if (lstat(src, &sb) != 0) return io_err(c->d, src, "stat"), -1;
    if (S_ISLNK(sb.st_mode)) {
        char real[PATH_MAX];
        if (!realpath(src, real) || !inside(c->root, real)) {
            nmc_diag_t *r = nmc_diag_add(c->d, NMC_SEV_ERROR, "store-symlink-escape", src, 0, 0, 0,
                                         "symbolic link points outside the imported directory%s%s",
                                         realpath(src, real) ? " to " : " (dangling)",
                                         realpath(src, real) ? real : "");
            nmc_diag_set_help(r, "a copied import takes only files under %s; import by "
                                 "reference (no --copy), or replace the link with the file "
                                 "(cp -rL)", c->root);
            return -1;
        }
        if (stat(src, &sb) != 0) return io_err(c->d, src, "stat"), -1;
    }
    if (S_ISREG(sb.st_mode)) return copy_file(c, src, dst);
    if (S_ISDIR(sb.st_mode)) {
        if (mkdir(dst, 0755) != 0) return io_err(c->d, dst, "create directory"), -1;
        return copy_tree(c, src, dst, depth + 1);
    }
    nmc_diag_t *r = nmc_diag_add(c->d, NMC_SEV_ERROR, "store-import-special", src, 0, 0, 0,
                                 "not a regular file or directory");
    nmc_diag_set_help(r, "remove it from the directory before importing");
    return -1;
}

static int copy_tree(copy_t *c, const char *src, const char *dst, int depth)
{
    if (depth > COPY_MAX_DEPTH) {
        nmc_diag_add(c->d, NMC_SEV_ERROR, "store-import-depth", src, 0, 0, 0,
                     "directories nest deeper than %d levels (a symlink loop?)", COPY_MAX_DEPTH);
        return -1;
    }
    DIR *dir = opendir(src);
    if (!dir) return io_err(c->d, src, "open directory"), -1;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(dir))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        rc = copy_entry(c, nmc_arena_printf(c->a, "%s/%s", src, e->d_name),
                        nmc_arena_printf(c->a, "%s/%s", dst, e->d_name), depth);
    }
    closedir(dir);
    return rc;
}

/* Count regular files and bytes under p (following symlinks, bounded depth). */
static void count_tree(nmc_arena_t *a, const char *p, int depth, int64_t *files, int64_t *bytes)
{
    struct stat sb;
    if (depth > COPY_MAX_DEPTH || stat(p, &sb) != 0) return;
    if (S_ISREG(sb.st_mode)) {
        (*files)++;
        *bytes += sb.st_size;
        return;
    }
    if (!S_ISDIR(sb.st_mode)) return;
    DIR *dir = opendir(p);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            count_tree(a, nmc_arena_printf(a, "%s/%s", p, e->d_name), depth + 1, files, bytes);
    closedir(dir);
}

/* ---- entity.json --------------------------------------------------------------------- */
void nmc_store_write_model_meta(nmc_json_writer_t *w, const nmc_store_model_meta_t *m)
{
    nmc_jw_key(w, "model");
    nmc_jw_begin_object(w);
    nmc_jw_key(w, "architecture"), nmc_jw_string(w, m->architecture ? m->architecture : "");
    nmc_jw_key(w, "model_type"), nmc_jw_string(w, m->model_type ? m->model_type : "");
    nmc_jw_key(w, "dtype"), nmc_jw_string(w, m->dtype);
    nmc_jw_key(w, "checkpoint"), nmc_jw_string(w, m->checkpoint);
    nmc_jw_key(w, "parameters"), nmc_jw_int(w, m->parameters);
    nmc_jw_key(w, "tensors"), nmc_jw_int(w, m->tensors);
    nmc_jw_key(w, "shards"), nmc_jw_int(w, m->shards);
    nmc_jw_key(w, "num_layers"), nmc_jw_int(w, m->num_layers);
    nmc_jw_key(w, "hidden_size"), nmc_jw_int(w, m->hidden_size);
    nmc_jw_key(w, "intermediate_size"), nmc_jw_int(w, m->intermediate_size);
    nmc_jw_key(w, "num_heads"), nmc_jw_int(w, m->num_heads);
    nmc_jw_key(w, "num_kv_heads"), nmc_jw_int(w, m->num_kv_heads);
    nmc_jw_key(w, "vocab_size"), nmc_jw_int(w, m->vocab_size);
    nmc_jw_key(w, "max_position_embeddings"), nmc_jw_int(w, m->max_position_embeddings);
    nmc_jw_key(w, "tie_word_embeddings"), nmc_jw_bool(w, m->tie_word_embeddings);
    nmc_jw_key(w, "has_tokenizer"), nmc_jw_bool(w, m->has_tokenizer);
    nmc_jw_end_object(w);
}

/* Write dir/entity.json atomically. path_field: absolute (reference) or relative to the
 * entity directory (copy). */
static int write_entity(const char *dir, const nmc_store_entity_t *e, const char *path_field,
                        nmc_diags_t *d)
{
    char *file = malloc(strlen(dir) + 16);
    if (!file) abort();
    sprintf(file, "%s/entity.json", dir);
    nmc_atomic_file_t af;
    int rc = nmc_atomic_begin(&af, file, d);
    if (rc == 0) {
        nmc_json_writer_t w;
        nmc_jw_init(&w, af.f, 2);
        nmc_jw_begin_object(&w);
        nmc_jw_key(&w, "format_version"), nmc_jw_int(&w, NMC_STORE_FORMAT_VERSION);
        nmc_jw_key(&w, "kind"), nmc_jw_string(&w, KIND_WORD[e->kind]);
        nmc_jw_key(&w, "workspace"), nmc_jw_string(&w, e->workspace);
        nmc_jw_key(&w, "name"), nmc_jw_string(&w, e->name);
        nmc_jw_key(&w, "storage"), nmc_jw_string(&w, e->by_reference ? "reference" : "copy");
        nmc_jw_key(&w, "path"), nmc_jw_string(&w, path_field);
        nmc_jw_key(&w, "source"), nmc_jw_string(&w, e->source);
        nmc_jw_key(&w, "files"), nmc_jw_int(&w, e->files);
        nmc_jw_key(&w, "bytes"), nmc_jw_int(&w, e->bytes);
        if (e->kind == NMC_ENTITY_MODEL) nmc_store_write_model_meta(&w, &e->model);
        nmc_jw_end_object(&w);
        fputc('\n', af.f);
        rc = nmc_atomic_commit(&af, d);
    }
    free(file);
    return rc;
}

typedef struct {
    const nmc_json_t *o;
    bool ok;
} reader_t;

static const char *rd_str(nmc_arena_t *a, reader_t *r, const char *key)
{
    const nmc_json_t *v = nmc_json_get(r->o, key);
    if (!v || v->kind != NMC_JSON_STRING) return r->ok = false, "";
    return nmc_arena_strdup(a, v->u.str.s);
}

static int64_t rd_int(reader_t *r, const char *key)
{
    const nmc_json_t *v = nmc_json_get(r->o, key);
    if (!v || v->kind != NMC_JSON_NUMBER || !v->u.num.int_ok) return r->ok = false, 0;
    return v->u.num.i;
}

static bool rd_bool(reader_t *r, const char *key)
{
    const nmc_json_t *v = nmc_json_get(r->o, key);
    if (!v || v->kind != NMC_JSON_BOOL) return r->ok = false, false;
    return v->u.boolean;
}

static void read_model_meta(nmc_arena_t *a, const nmc_json_t *o, nmc_store_model_meta_t *m,
                            bool *ok)
{
    reader_t r = {.o = o, .ok = o && o->kind == NMC_JSON_OBJECT};
    m->architecture = rd_str(a, &r, "architecture");
    m->model_type = rd_str(a, &r, "model_type");
    m->dtype = rd_str(a, &r, "dtype");
    m->checkpoint = rd_str(a, &r, "checkpoint");
    m->parameters = rd_int(&r, "parameters");
    m->tensors = rd_int(&r, "tensors");
    m->shards = rd_int(&r, "shards");
    m->num_layers = rd_int(&r, "num_layers");
    m->hidden_size = rd_int(&r, "hidden_size");
    m->intermediate_size = rd_int(&r, "intermediate_size");
    m->num_heads = rd_int(&r, "num_heads");
    m->num_kv_heads = rd_int(&r, "num_kv_heads");
    m->vocab_size = rd_int(&r, "vocab_size");
    m->max_position_embeddings = rd_int(&r, "max_position_embeddings");
    m->tie_word_embeddings = rd_bool(&r, "tie_word_embeddings");
    m->has_tokenizer = rd_bool(&r, "has_tokenizer");
    if (!r.ok) *ok = false;
}

static const char *entity_dir(const nmc_store_t *s, nmc_entity_kind_t k, const char *ws,
                              const char *name)
{
    return nmc_arena_printf(s->arena, "%s/%s/%s/%s", s->home, KIND_DIR[k], ws, name);
}

/* Read <dir>/entity.json into *e. Returns 0, or -1 with store-entity-invalid. */
static int read_entity(const nmc_store_t *s, nmc_entity_kind_t kind, const char *dir,
                       nmc_store_entity_t *e, nmc_diags_t *d)
{
    nmc_arena_t *a = s->arena;
    const char *file = nmc_arena_printf(a, "%s/entity.json", dir);
    nmc_json_t *root = NULL;
    memset(e, 0, sizeof *e);
    if (nmc_json_parse_file(a, file, NULL, &root, NULL, NULL, d) == 0) {
        reader_t r = {.o = root, .ok = root->kind == NMC_JSON_OBJECT};
        const char *kw = rd_str(a, &r, "kind");
        e->kind = kind;
        e->workspace = rd_str(a, &r, "workspace");
        e->name = rd_str(a, &r, "name");
        const char *storage = rd_str(a, &r, "storage");
        const char *path = rd_str(a, &r, "path");
        e->source = rd_str(a, &r, "source");
        e->files = rd_int(&r, "files");
        e->bytes = rd_int(&r, "bytes");
        bool ok = r.ok && rd_int(&r, "format_version") == NMC_STORE_FORMAT_VERSION &&
                  strcmp(kw, KIND_WORD[kind]) == 0 &&
                  (strcmp(storage, "reference") == 0 || strcmp(storage, "copy") == 0);
        if (kind == NMC_ENTITY_MODEL) read_model_meta(a, nmc_json_get(root, "model"), &e->model, &ok);
        e->by_reference = strcmp(storage, "reference") == 0;
        e->entity_dir = dir;
        e->ref = nmc_arena_printf(a, "%s/%s", e->workspace, e->name);
        e->path = e->by_reference || path[0] == '/' ? path : nmc_arena_printf(a, "%s/%s", dir, path);
        if (ok) return 0;
    }
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "store-entity-invalid", file, 0, 0, 0,
                                 "the %s entity file is damaged or from another nmc version",
                                 KIND_WORD[kind]);
    nmc_diag_set_help(r, "remove %s and import the %s again", dir, KIND_WORD[kind]);
    return -1;
}

/* ---- resolve ------------------------------------------------------------------------- */
/* The stored ref nearest to workspace/name: same name in another workspace, or a full
 * ref within edit distance 2. NULL when nothing is close. */
static const char *closest_ref(const nmc_store_t *s, nmc_entity_kind_t kind, const char *ref,
                               const char *name)
{
    nmc_store_entity_t *items;
    size_t n;
    nmc_diags_t quiet;
    nmc_diags_init(&quiet);
    const char *best = NULL;
    size_t best_d = 3; /* suggest within edit distance 2 */
    if (nmc_store_list(s, kind, &items, &n, &quiet) == 0)
        for (size_t i = 0; i < n; i++) {
            size_t dist = nmc_edit_distance(ref, strlen(ref), items[i].ref, strlen(items[i].ref));
            if (strcmp(items[i].name, name) == 0) dist = 1; /* another workspace */
            if (dist < best_d) best_d = dist, best = items[i].ref;
        }
    nmc_diags_free(&quiet);
    return best;
}

static void not_found(const nmc_store_t *s, nmc_entity_kind_t kind, const char *ref,
                      const nmc_store_ref_t *r, nmc_diags_t *d)
{
    const char *code = kind == NMC_ENTITY_MODEL ? "store-model-not-found" : "store-fileset-not-found";
    nmc_diag_t *x = nmc_diag_add(d, NMC_SEV_ERROR, code, NULL, 0, 0, 0,
                                 "%s '%s/%s' is not in the store (%s)", KIND_WORD[kind],
                                 r->workspace, r->name, s->home);
    const char *full = nmc_arena_printf(s->arena, "%s/%s", r->workspace, r->name);
    const char *near = closest_ref(s, kind, full, r->name);
    if (kind == NMC_ENTITY_MODEL)
        nmc_diag_set_help(x, "%s%s%simport it first: nmc models import /path/to/model-dir --name %s",
                          near ? "did you mean '" : "", near ? near : "", near ? "'?\n" : "", ref);
    else
        nmc_diag_set_help(x, "%s%s%simport it first: nmc filesets import /path/to/data --name %s",
                          near ? "did you mean '" : "", near ? near : "", near ? "'?\n" : "", ref);
}

/* The files of a by-reference (or copied) entity must still be there. */
static int check_files(const nmc_store_entity_t *e, const char *given, nmc_diags_t *d)
{
    struct stat sb;
    bool model = e->kind == NMC_ENTITY_MODEL;
    const char *why = NULL;
    if (stat(e->path, &sb) != 0) why = "no longer exist";
    else if (model && !S_ISDIR(sb.st_mode)) why = "are no longer a directory";
    else if (model) {
        char *cfg = malloc(strlen(e->path) + 16);
        if (!cfg) abort();
        sprintf(cfg, "%s/config.json", e->path);
        if (access(cfg, R_OK) != 0) why = "no longer hold a readable config.json";
        free(cfg);
    }
    if (!why) return 0;
    nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "store-source-missing", e->path, 0, 0, 0,
                                 "%s '%s' was imported %s; its files at %s %s", KIND_WORD[e->kind],
                                 e->ref, e->by_reference ? "by reference" : "by copy", e->path, why);
    nmc_diag_set_help(r, "restore the files, or re-import: rm -r %s && nmc %s import %s --name %s%s",
                      e->entity_dir, model ? "models" : "filesets", e->source, given,
                      e->by_reference ? "" : " --copy");
    return -1;
}

static int resolve(const nmc_store_t *s, nmc_entity_kind_t kind, const char *ref,
                   nmc_store_entity_t *out, nmc_diags_t *d)
{
    nmc_store_ref_t r;
    memset(out, 0, sizeof *out);
    if (nmc_store_parse_ref(ref, KIND_WORD[kind], KIND_WORD[kind], &r, d) != 0) return -1;
    const char *dir = entity_dir(s, kind, r.workspace, r.name);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        not_found(s, kind, ref, &r, d);
        return -1;
    }
    if (read_entity(s, kind, dir, out, d) != 0) return -1;
    return check_files(out, ref, d);
}

int nmc_store_resolve_model(const nmc_store_t *s, const char *ref, nmc_store_entity_t *out,
                            nmc_diags_t *d)
{
    return resolve(s, NMC_ENTITY_MODEL, ref, out, d);
}

int nmc_store_resolve_fileset(const nmc_store_t *s, const char *ref, nmc_store_entity_t *out,
                              nmc_diags_t *d)
{
    return resolve(s, NMC_ENTITY_FILESET, ref, out, d);
}

const char *nmc_store_adapter_dir(const nmc_store_t *s, const nmc_store_entity_t *base,
                                  const char *adapter)
{
    return nmc_arena_printf(s->arena, "%s/adapters/%s", base->entity_dir, adapter);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int nmc_store_list_adapters(const nmc_store_t *s, const nmc_store_entity_t *base,
                            const char ***names, size_t *n, nmc_diags_t *d)
{
    *names = NULL;
    *n = 0;
    const char *adir = nmc_arena_printf(s->arena, "%s/adapters", base->entity_dir);
    DIR *dir = opendir(adir);
    if (!dir) {
        if (errno == ENOENT) return 0; /* no adapter trained on this base yet */
        io_err(d, adir, "read the adapters directory");
        return -1;
    }
    size_t cap = 0;
    const char **v = NULL;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        struct stat st;
        const char *cfg = nmc_arena_printf(s->arena, "%s/%s/adapter_config.json", adir, e->d_name);
        if (stat(cfg, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            const char **nv = nmc_arena_alloc(s->arena, cap * sizeof *nv);
            if (*n) memcpy(nv, v, *n * sizeof *nv);
            v = nv;
        }
        v[(*n)++] = nmc_arena_strdup(s->arena, e->d_name);
    }
    closedir(dir);
    if (*n) qsort(v, *n, sizeof *v, cmp_str);
    *names = v;
    return 0;
}

/* ---- list ------------------------------------------------------------------------------ */
static int cmp_entity(const void *x, const void *y)
{
    return strcmp(((const nmc_store_entity_t *)x)->ref, ((const nmc_store_entity_t *)y)->ref);
}

typedef struct {
    nmc_store_entity_t *v;
    size_t n, cap;
} entvec_t;

static void push_entity(nmc_arena_t *a, entvec_t *ev, const nmc_store_entity_t *e)
{
    if (ev->n == ev->cap) {
        size_t cap = ev->cap ? ev->cap * 2 : 16;
        nmc_store_entity_t *v = nmc_arena_alloc(a, cap * sizeof *v);
        if (ev->n) memcpy(v, ev->v, ev->n * sizeof *v);
        ev->v = v, ev->cap = cap;
    }
    ev->v[ev->n++] = *e;
}

static void list_workspace(const nmc_store_t *s, nmc_entity_kind_t kind, const char *ws,
                           entvec_t *ev, nmc_diags_t *d)
{
    const char *wdir = nmc_arena_printf(s->arena, "%s/%s/%s", s->home, KIND_DIR[kind], ws);
    DIR *dir = opendir(wdir);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue; /* ., .., temporary imports */
        nmc_store_entity_t ent;
        if (read_entity(s, kind, entity_dir(s, kind, ws, e->d_name), &ent, d) == 0)
            push_entity(s->arena, ev, &ent);
    }
    closedir(dir);
}

int nmc_store_list(const nmc_store_t *s, nmc_entity_kind_t kind, nmc_store_entity_t **items,
                   size_t *n, nmc_diags_t *d)
{
    entvec_t ev = {0};
    *items = NULL;
    *n = 0;
    const char *kdir = nmc_arena_printf(s->arena, "%s/%s", s->home, KIND_DIR[kind]);
    DIR *dir = opendir(kdir);
    if (!dir) {
        if (errno == ENOENT) return 0; /* nothing imported yet */
        io_err(d, kdir, "read the store");
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.') list_workspace(s, kind, nmc_arena_strdup(s->arena, e->d_name), &ev, d);
    closedir(dir);
    if (ev.n) qsort(ev.v, ev.n, sizeof *ev.v, cmp_entity);
    *items = ev.v;
    *n = ev.n;
    return 0;
}

/* ---- import ------------------------------------------------------------------------------ */
static const char *float_dtype_name(nmc_st_dtype_t dt)
{
    switch (dt) {
    case NMC_ST_F32: return "float32";
    case NMC_ST_F16: return "float16";
    case NMC_ST_BF16: return "bfloat16";
    default: return nmc_st_dtype_name(dt);
    }
}

/* Checkpoint facts: dtype holding the most bytes, element count, tensor and file count. */
static void checkpoint_meta(nmc_arena_t *a, const nmc_st_t *st, nmc_store_model_meta_t *m)
{
    size_t bytes[NMC_ST_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < nmc_st_count(st); i++) {
        const nmc_st_tensor_t *t = nmc_st_at(st, i);
        bytes[t->dtype] += t->nbytes;
        m->parameters += t->numel;
    }
    int best = 0;
    for (int k = 1; k < NMC_ST_DTYPE_COUNT; k++)
        if (bytes[k] > bytes[best]) best = k;
    m->dtype = nmc_arena_strdup(a, float_dtype_name((nmc_st_dtype_t)best));
    m->tensors = (int64_t)nmc_st_count(st);
    m->shards = (int64_t)nmc_st_file_count(st);
}

/* Validate a model directory and fill the model part of *e. */
static int validate_model(nmc_arena_t *a, const char *dir, nmc_store_entity_t *e, nmc_diags_t *d)
{
    nmc_model_config_t cfg;
    if (nmc_model_config_load(a, dir, &cfg, d) != 0) return -1;
    nmc_st_t *st = NULL;
    if (nmc_st_open(dir, &st, d) != 0) return -1;
    const char *idx = nmc_arena_printf(a, "%s/model.safetensors.index.json", dir);
    bool sharded = access(idx, F_OK) == 0;
    int rc = nmc_model_config_check_checkpoint(&cfg, st, sharded ? idx
                                               : nmc_arena_printf(a, "%s/model.safetensors", dir), d);
    nmc_store_model_meta_t *m = &e->model;
    m->architecture = cfg.architecture;
    m->model_type = cfg.model_type ? cfg.model_type : "";
    m->checkpoint = sharded ? "model.safetensors.index.json" : "model.safetensors";
    m->num_layers = cfg.num_layers, m->hidden_size = cfg.hidden_size;
    m->intermediate_size = cfg.intermediate_size, m->vocab_size = cfg.vocab_size;
    m->num_heads = cfg.num_heads, m->num_kv_heads = cfg.num_kv_heads;
    m->max_position_embeddings = cfg.max_position_embeddings;
    m->tie_word_embeddings = cfg.tie_word_embeddings;
    checkpoint_meta(a, st, m);
    nmc_st_close(st);
    m->has_tokenizer = access(nmc_arena_printf(a, "%s/tokenizer.json", dir), R_OK) == 0;
    if (!m->has_tokenizer) {
        nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_WARNING, "store-no-tokenizer", dir, 0, 0, 0,
                                     "no tokenizer.json in the model directory");
        nmc_diag_set_help(r, "training needs the model's tokenizer; save it beside the weights "
                             "(tokenizer.save_pretrained(dir)) and import again");
    }
    return rc;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* Build the entity under a temp directory, then rename it into place. */
static int place_entity(nmc_store_t *s, nmc_store_entity_t *e, bool is_dir, bool copy,
                        nmc_diags_t *d)
{
    nmc_arena_t *a = s->arena;
    const char *final = entity_dir(s, e->kind, e->workspace, e->name);
    const char *wsdir = nmc_arena_printf(a, "%s/%s/%s", s->home, KIND_DIR[e->kind], e->workspace);
    if (mkdir_p(wsdir, d) != 0) return -1;
    char *tmp = nmc_arena_printf(a, "%s/.tmp-%s-XXXXXX", wsdir, e->name);
    if (!mkdtemp(tmp)) return io_err(d, wsdir, "create a temporary directory"), -1;
    chmod(tmp, 0755);
    const char *rel = NULL;
    int rc = 0;
    if (copy) {
        copy_t c = {.a = a, .root = e->source, .d = d};
        const char *files = nmc_arena_printf(a, "%s/files", tmp);
        if (is_dir) {
            rc = mkdir(files, 0755) == 0 ? copy_tree(&c, e->source, files, 0)
                                         : (io_err(d, files, "create directory"), -1);
            rel = "files";
        } else {
            rel = nmc_arena_printf(a, "files/%s", base_name(e->source));
            rc = mkdir(files, 0755) == 0
                     ? copy_file(&c, e->source, nmc_arena_printf(a, "%s/%s", tmp, rel))
                     : (io_err(d, files, "create directory"), -1);
        }
        e->files = c.files, e->bytes = c.bytes;
    } else {
        count_tree(a, e->source, 0, &e->files, &e->bytes);
        rel = e->source;
    }
    if (rc == 0) rc = write_entity(tmp, e, rel, d);
    if (rc == 0 && rename(tmp, final) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY) {
            nmc_diag_t *r = nmc_diag_add(d, NMC_SEV_ERROR, "store-entity-exists", NULL, 0, 0, 0,
                                         "%s '%s/%s' already exists", KIND_WORD[e->kind],
                                         e->workspace, e->name);
            nmc_diag_set_help(r, "choose another --name, or remove %s first", final);
        } else {
            io_err(d, final, "move the imported entity into place");
        }
        rc = -1;
    }
    if (rc != 0) rm_rf(tmp);
    else fsync_dir_of(final);
    return rc;
}

static int import_common(nmc_store_t *s, nmc_entity_kind_t kind, const char *src,
                         const char *ref, bool copy, nmc_store_entity_t *out, nmc_diags_t *d)
{
    nmc_store_ref_t r;
    memset(out, 0, sizeof *out);
    if (nmc_store_parse_ref(ref, KIND_WORD[kind], "--name", &r, d) != 0) return -1;
    char real[PATH_MAX];
    struct stat sb;
    if (!realpath(src, real) || stat(real, &sb) != 0) {
        io_err(d, src, "read the import source");
        return -1;
    }
    bool is_dir = S_ISDIR(sb.st_mode);
    if ((kind == NMC_ENTITY_MODEL && !is_dir) || (!is_dir && !S_ISREG(sb.st_mode))) {
        nmc_diag_t *x = nmc_diag_add(d, NMC_SEV_ERROR, "store-import-source", src, 0, 0, 0,
                                     "not a %s", kind == NMC_ENTITY_MODEL ? "directory"
                                                                         : "file or directory");
        nmc_diag_set_help(x, kind == NMC_ENTITY_MODEL
                                 ? "pass the directory holding config.json and the safetensors"
                                 : "pass a data file (e.g. train.jsonl) or a directory of them");
        return -1;
    }
    if (copy && is_dir && inside(real, s->home)) {
        nmc_diag_t *x = nmc_diag_add(d, NMC_SEV_ERROR, "store-import-source", src, 0, 0, 0,
                                     "the store (%s) is inside the directory to copy", s->home);
        nmc_diag_set_help(x, "import by reference, or set NMC_HOME to a directory outside %s", real);
        return -1;
    }
    const char *final = entity_dir(s, kind, r.workspace, r.name);
    if (access(final, F_OK) == 0) {
        nmc_diag_t *x = nmc_diag_add(d, NMC_SEV_ERROR, "store-entity-exists", NULL, 0, 0, 0,
                                     "%s '%s/%s' already exists", KIND_WORD[kind], r.workspace, r.name);
        nmc_diag_set_help(x, "choose another --name, or remove %s first", final);
        return -1;
    }
    nmc_store_entity_t e = {.kind = kind, .by_reference = !copy};
    e.workspace = nmc_arena_strdup(s->arena, r.workspace);
    e.name = nmc_arena_strdup(s->arena, r.name);
    e.source = nmc_arena_strdup(s->arena, real);
    if (kind == NMC_ENTITY_MODEL && validate_model(s->arena, real, &e, d) != 0) return -1;
    if (place_entity(s, &e, is_dir, copy, d) != 0) return -1;
    return read_entity(s, kind, final, out, d);
}

int nmc_store_import_model(nmc_store_t *s, const char *src, const char *ref, bool copy,
                           nmc_store_entity_t *out, nmc_diags_t *d)
{
    return import_common(s, NMC_ENTITY_MODEL, src, ref, copy, out, d);
}

int nmc_store_import_fileset(nmc_store_t *s, const char *src, const char *ref, bool copy,
                             nmc_store_entity_t *out, nmc_diags_t *d)
{
    return import_common(s, NMC_ENTITY_FILESET, src, ref, copy, out, d);
}
