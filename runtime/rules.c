/* rules.c — the one engine that walks the generated rule tables: reads paths of a loaded
 * job (after defaults), evaluates clauses, fills autofill objects, computes derived values
 * and checks the cross-field rules (divisible / forbid / require), reporting every
 * violation with its arithmetic and the message template filled in.
 *
 * Path semantics follow codegen/lib/dsl.lua ("Clause semantics"): an absent or null object
 * on the way reads the defaults of its type; a union continues into its first object
 * variant; an absent/null value satisfies only "!=", "unset" and "== null".
 */
#include "job_int.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are one line; longer templates are cut. */
#define MSG_MAX 1024

/* ---- reading ---------------------------------------------------------------------------------- */

static void read_default(const nmc_field_desc_t *f, nmc_val_t *out)
{
    if (!(f->flags & NMC_F_HAS_DEFAULT)) return;
    if (f->flags & NMC_F_DEFAULT_NULL) {
        out->is_null = true;
        return;
    }
    out->present = true;
    out->scalar = true;
    switch (f->store) {
    case NMC_FSTORE_BOOL: out->v = (nmc_lit_t){ .kind = NMC_LIT_BOOL, .b = f->def.b }; break;
    case NMC_FSTORE_INT: out->v = (nmc_lit_t){ .kind = NMC_LIT_INT, .i = f->def.i, .d = (double)f->def.i }; break;
    case NMC_FSTORE_FLOAT: out->v = (nmc_lit_t){ .kind = NMC_LIT_FLOAT, .d = f->def.d }; break;
    case NMC_FSTORE_STRING:
    case NMC_FSTORE_ENUM: out->v = (nmc_lit_t){ .kind = NMC_LIT_STRING, .s = f->def.s }; break;
    default: out->scalar = false; break;
    }
}

static void read_field(const char *base, const nmc_object_desc_t *od, const nmc_field_desc_t *f, nmc_val_t *out)
{
    out->base = base;
    out->od = od;
    out->f = f;
    if (!base) {
        read_default(f, out);
        return;
    }
    const uint64_t *given = (const uint64_t *)(base + od->given_off), *has = (const uint64_t *)(base + od->has_off),
                   *nul = (const uint64_t *)(base + od->null_off), *bad = (const uint64_t *)(base + od->bad_off);
    out->given = NMC_BIT_GET(given, f->index);
    out->bad = out->bad || NMC_BIT_GET(bad, f->index);
    out->is_null = NMC_BIT_GET(nul, f->index);
    out->present = NMC_BIT_GET(has, f->index);
    if (!out->present) return;
    const char *p = base + f->offset;
    out->scalar = true;
    switch (f->store) {
    case NMC_FSTORE_BOOL: out->v = (nmc_lit_t){ .kind = NMC_LIT_BOOL, .b = *(const bool *)p }; break;
    case NMC_FSTORE_INT: {
        int64_t i = *(const int64_t *)p;
        out->v = (nmc_lit_t){ .kind = NMC_LIT_INT, .i = i, .d = (double)i };
        break;
    }
    case NMC_FSTORE_FLOAT: out->v = (nmc_lit_t){ .kind = NMC_LIT_FLOAT, .d = *(const double *)p }; break;
    case NMC_FSTORE_STRING: out->v = (nmc_lit_t){ .kind = NMC_LIT_STRING, .s = *(const char *const *)p }; break;
    case NMC_FSTORE_ENUM: out->v = (nmc_lit_t){ .kind = NMC_LIT_STRING, .s = f->type.enm->names[*(const int *)p] }; break;
    case NMC_FSTORE_UNION: {
        /* a scalar variant reads as that scalar */
        const nmc_union_t *u = (const void *)p;
        const nmc_json_t *j = u->json;
        out->scalar = false;
        if (j && j->kind == NMC_JSON_STRING) out->v = (nmc_lit_t){ .kind = NMC_LIT_STRING, .s = j->u.str.s }, out->scalar = true;
        if (j && j->kind == NMC_JSON_BOOL) out->v = (nmc_lit_t){ .kind = NMC_LIT_BOOL, .b = j->u.boolean }, out->scalar = true;
        if (j && j->kind == NMC_JSON_NUMBER) {
            out->scalar = true;
            out->v = j->u.num.int_ok ? (nmc_lit_t){ .kind = NMC_LIT_INT, .i = j->u.num.i, .d = (double)j->u.num.i }
                                     : (nmc_lit_t){ .kind = NMC_LIT_FLOAT, .d = j->u.num.d };
        }
        break;
    }
    default: out->scalar = false; break;
    }
}

/* One step of a field path: the struct the next field lives in, or NULL for "read defaults". */
static const char *step_base(const char *base, const nmc_object_desc_t *od, const nmc_field_desc_t *f,
                             const nmc_object_desc_t *next, bool *bad)
{
    if (!base) return NULL;
    if (NMC_BIT_GET((const uint64_t *)(base + od->bad_off), f->index)) *bad = true;
    if (!NMC_BIT_GET((const uint64_t *)(base + od->has_off), f->index)) return NULL;
    const char *p = base + f->offset;
    switch (f->store) {
    case NMC_FSTORE_OBJECT: return p;
    case NMC_FSTORE_OBJECT_PTR: return *(const char *const *)p;
    case NMC_FSTORE_UNION: {
        const nmc_union_t *u = (const void *)p;
        if (u->obj && f->type.variants[u->variant].obj == next) return u->obj;
        return NULL;
    }
    default: return NULL;
    }
}

static void read_chain(const nmc_job_t *job, const uint16_t *chain, int n, nmc_val_t *out)
{
    const char *base = job->spec;
    const nmc_object_desc_t *od = job->backend->root;
    for (int k = 0; k < n && od; k++) {
        if (chain[k] >= od->n_fields) return;
        const nmc_field_desc_t *f = &od->fields[chain[k]];
        if (k == n - 1) {
            read_field(base, od, f, out);
            return;
        }
        const nmc_object_desc_t *next = nmc_desc_step(f);
        base = step_base(base, od, f, next, &out->bad);
        od = next;
    }
}

static const nmc_model_fact_t *find_fact(const nmc_model_facts_t *facts, const char *name)
{
    for (size_t i = 0; facts && i < facts->n; i++)
        if (strcmp(facts->items[i].name, name) == 0) return &facts->items[i];
    return NULL;
}

void nmc_ref_read(const nmc_job_t *job, const nmc_ref_t *r, const nmc_model_facts_t *facts, nmc_val_t *out)
{
    memset(out, 0, sizeof *out);
    if (r->kind == NMC_REF_DERIVED) {
        const nmc_derived_t *d = job->derived ? &job->derived[r->derived] : NULL;
        if (!d || !d->defined) {
            out->unknown = true;
            return;
        }
        out->present = out->scalar = true;
        out->v = d->v;
    } else if (r->kind == NMC_REF_MODEL) {
        const nmc_model_fact_t *f = find_fact(facts, r->name);
        if (!f) {
            out->unknown = true;
            return;
        }
        out->present = f->value.kind != NMC_LIT_NULL;
        out->is_null = !out->present;
        out->scalar = true;
        out->v = f->value;
    } else {
        read_chain(job, r->chain, r->n, out);
    }
}

/* Read a path written as text ("batch.micro_batch_size", "$total_gpus", "$model.x"). */
static void read_text(const nmc_job_t *job, const char *text, size_t len, const nmc_model_facts_t *facts,
                      nmc_val_t *out)
{
    memset(out, 0, sizeof *out);
    char name[128];
    if (len >= sizeof name) {
        out->unknown = true;
        return;
    }
    memcpy(name, text, len);
    name[len] = 0;
    if (name[0] == '$') {
        nmc_ref_t r = { .kind = NMC_REF_DERIVED, .name = name + 1, .text = name };
        if (strncmp(name + 1, "model.", 6) == 0) {
            r.kind = NMC_REF_MODEL;
            r.name = name + 7;
        } else {
            r.derived = -1;
            for (size_t i = 0; i < job->backend->n_derived; i++)
                if (strcmp(job->backend->derived[i].name, name + 1) == 0) r.derived = (int16_t)i;
            if (r.derived < 0) {
                out->unknown = true;
                return;
            }
        }
        nmc_ref_read(job, &r, facts, out);
        return;
    }
    uint16_t chain[16];
    int n = 0;
    const nmc_object_desc_t *od = job->backend->root;
    for (char *seg = name; seg && od && n < 16;) {
        char *dot = strchr(seg, '.');
        size_t sl = dot ? (size_t)(dot - seg) : strlen(seg);
        int i = od->lookup(seg, sl);
        if (i < 0) break;
        chain[n++] = (uint16_t)i;
        if (!dot) {
            read_chain(job, chain, n, out);
            return;
        }
        od = nmc_desc_step(&od->fields[i]);
        seg = dot + 1;
    }
    out->unknown = true;
}

/* ---- clauses ---------------------------------------------------------------------------------- */

static bool is_num(const nmc_lit_t *a) { return a->kind == NMC_LIT_INT || a->kind == NMC_LIT_FLOAT; }

static bool lit_eq(const nmc_lit_t *a, const nmc_lit_t *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->kind == NMC_LIT_INT && b->kind == NMC_LIT_INT) return a->i == b->i;
        return a->d == b->d;
    }
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case NMC_LIT_BOOL: return a->b == b->b;
    case NMC_LIT_STRING: return a->s && b->s && strcmp(a->s, b->s) == 0;
    case NMC_LIT_NULL: return true;
    default: return false;
    }
}

/* -1/0/1, or 2 when not comparable */
static int lit_cmp(const nmc_lit_t *a, const nmc_lit_t *b)
{
    if (!is_num(a) || !is_num(b)) return 2;
    if (a->kind == NMC_LIT_INT && b->kind == NMC_LIT_INT) return (a->i > b->i) - (a->i < b->i);
    return (a->d > b->d) - (a->d < b->d);
}

int nmc_clause_eval(const nmc_job_t *job, const nmc_clause_t *c, const nmc_model_facts_t *facts)
{
    nmc_val_t v;
    nmc_ref_read(job, &c->ref, facts, &v);
    if (v.bad || (v.unknown && c->ref.kind == NMC_REF_MODEL)) return -1;
    switch (c->op) {
    case NMC_OP_SET: return v.present;
    case NMC_OP_UNSET: return !v.present;
    case NMC_OP_GIVEN: return v.given;
    default: break;
    }
    if (!v.present || !v.scalar) {
        if (!v.present) {
            if (c->op == NMC_OP_EQ) return c->lit.kind == NMC_LIT_NULL;
            if (c->op == NMC_OP_NE) return c->lit.kind != NMC_LIT_NULL;
            if (c->op == NMC_OP_IN)
                for (int i = 0; i < c->n_list; i++)
                    if (c->list[i].kind == NMC_LIT_NULL) return 1;
            return 0;
        }
        return c->op == NMC_OP_NE; /* a list/object equals no scalar */
    }
    int k;
    switch (c->op) {
    case NMC_OP_EQ: return lit_eq(&v.v, &c->lit);
    case NMC_OP_NE: return !lit_eq(&v.v, &c->lit);
    case NMC_OP_GT: k = lit_cmp(&v.v, &c->lit); return k != 2 && k > 0;
    case NMC_OP_GE: k = lit_cmp(&v.v, &c->lit); return k != 2 && k >= 0;
    case NMC_OP_LT: k = lit_cmp(&v.v, &c->lit); return k != 2 && k < 0;
    case NMC_OP_LE: k = lit_cmp(&v.v, &c->lit); return k != 2 && k <= 0;
    case NMC_OP_IN:
        for (int i = 0; i < c->n_list; i++)
            if (lit_eq(&v.v, &c->list[i])) return 1;
        return 0;
    case NMC_OP_STARTS_WITH:
        return v.v.kind == NMC_LIT_STRING && c->lit.s && strncmp(v.v.s, c->lit.s, strlen(c->lit.s)) == 0;
    default: return 0;
    }
}

/* 1 when every clause holds, 0 when one does not, -1 when one cannot be told. */
static int all_hold(const nmc_job_t *job, const nmc_clause_t *cl, int n, const nmc_model_facts_t *facts)
{
    int res = 1;
    for (int i = 0; i < n; i++) {
        int e = nmc_clause_eval(job, &cl[i], facts);
        if (e == 0) return 0;
        if (e < 0) res = -1;
    }
    return res;
}

/* ---- autofill and derived values -------------------------------------------------------------- */

void nmc_rules_autofill(nmc_job_t *job, void *vbase, const nmc_object_desc_t *od)
{
    char *base = vbase;
    uint64_t *has = (uint64_t *)(base + od->has_off), *nul = (uint64_t *)(base + od->null_off);
    for (int i = 0; i < od->n_fields; i++) {
        const nmc_field_desc_t *f = &od->fields[i];
        char *p = base + f->offset;
        if ((f->flags & NMC_F_AUTOFILL) && !NMC_BIT_GET(has, i) &&
            !NMC_BIT_GET((uint64_t *)(base + od->bad_off), i) &&
            (f->store == NMC_FSTORE_OBJECT || f->store == NMC_FSTORE_OBJECT_PTR) &&
            all_hold(job, f->autofill, f->n_autofill, NULL) == 1) {
            char *sub = p;
            if (f->store == NMC_FSTORE_OBJECT_PTR) {
                sub = nmc_arena_alloc(job->arena, f->type.obj->size);
                *(void **)p = sub;
            }
            nmc_job_fill_defaults(job, f->type.obj, sub);
            NMC_BIT_SET(has, i);
            NMC_BIT_CLR(nul, i);
        }
        if (!NMC_BIT_GET(has, i)) continue;
        if (f->store == NMC_FSTORE_OBJECT) nmc_rules_autofill(job, p, f->type.obj);
        else if (f->store == NMC_FSTORE_OBJECT_PTR && *(void **)p) nmc_rules_autofill(job, *(void **)p, f->type.obj);
        else if (f->store == NMC_FSTORE_UNION) {
            nmc_union_t *u = (nmc_union_t *)p;
            if (u->obj) nmc_rules_autofill(job, u->obj, f->type.variants[u->variant].obj);
        }
    }
}

/* Product of integer refs; false when one is missing, not an integer, or it overflows. */
static bool product(const nmc_job_t *job, const nmc_ref_t *refs, int n, const nmc_model_facts_t *facts, int64_t *out)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) {
        nmc_val_t v;
        nmc_ref_read(job, &refs[i], facts, &v);
        if (!v.present || v.bad || v.unknown || !v.scalar || v.v.kind != NMC_LIT_INT) return false;
        if (__builtin_mul_overflow(p, v.v.i, &p)) return false;
    }
    *out = p;
    return true;
}

void nmc_rules_derive(nmc_job_t *job)
{
    const nmc_backend_desc_t *b = job->backend;
    job->derived = nmc_arena_alloc(job->arena, (b->n_derived ? b->n_derived : 1) * sizeof *job->derived);
    for (size_t i = 0; i < b->n_derived; i++) {
        const nmc_derive_desc_t *d = &b->derived[i];
        nmc_derived_t *o = &job->derived[i];
        int64_t x, y;
        switch (d->kind) {
        case NMC_DERIVE_PRODUCT:
            if (product(job, d->operands, d->n_operands, NULL, &x))
                *o = (nmc_derived_t){ true, { .kind = NMC_LIT_INT, .i = x, .d = (double)x } };
            break;
        case NMC_DERIVE_QUOTIENT:
            if (product(job, d->operands, d->n_operands, NULL, &x) &&
                product(job, d->divisors, d->n_divisors, NULL, &y) && y != 0 && x % y == 0)
                *o = (nmc_derived_t){ true, { .kind = NMC_LIT_INT, .i = x / y, .d = (double)(x / y) } };
            break;
        case NMC_DERIVE_CASES:
            for (int k = 0; k < d->n_cases; k++) {
                const nmc_derive_case_t *cs = &d->cases[k];
                if (cs->n_when && all_hold(job, cs->when, cs->n_when, NULL) != 1) continue;
                o->defined = true;
                o->v = cs->value;
                break;
            }
            break;
        default: break;
        }
    }
}

/* ---- reporting -------------------------------------------------------------------------------- */

/* The deepest JSON node on a field path; *exact when it is the value itself. */
static const nmc_json_t *ref_node(const nmc_job_t *job, const nmc_ref_t *r, bool *exact)
{
    *exact = false;
    if (r->kind != NMC_REF_FIELD || !job->spec) return NULL;
    const char *base = job->spec;
    const nmc_object_desc_t *od = job->backend->root;
    const nmc_json_t *best = *(const nmc_json_t *const *)(base + od->json_off);
    for (int k = 0; k < r->n && base && od; k++) {
        const nmc_field_desc_t *f = &od->fields[r->chain[k]];
        const nmc_json_t *obj = *(const nmc_json_t *const *)(base + od->json_off);
        const nmc_json_member_t *m = obj ? nmc_json_member(obj, f->name) : NULL;
        if (!m) break;
        best = m->value;
        if (k == r->n - 1) {
            *exact = true;
            break;
        }
        bool bad = false;
        const nmc_object_desc_t *next = nmc_desc_step(f);
        base = step_base(base, od, f, next, &bad);
        od = next;
    }
    return best;
}

static void ref_path(const nmc_job_t *job, const nmc_ref_t *r, nmc_path_t *p)
{
    memset(p, 0, sizeof *p);
    if (job->is_envelope) nmc_path_push_key(p, "spec", 4);
    if (r->kind != NMC_REF_FIELD) return;
    const nmc_object_desc_t *od = job->backend->root;
    for (int k = 0; k < r->n && od; k++) {
        const nmc_field_desc_t *f = &od->fields[r->chain[k]];
        nmc_path_push_key(p, f->name, f->name_len);
        od = nmc_desc_step(f);
    }
}

static void format_val(const nmc_val_t *v, char *buf, size_t cap)
{
    if (v->present && v->scalar) nmc_lit_format(&v->v, buf, cap);
    else if (v->present) snprintf(buf, cap, "(set)");
    else snprintf(buf, cap, "null");
}

/* Fill {path} / {$derived} placeholders. */
static void fill_template(const nmc_job_t *job, const char *tpl, const nmc_model_facts_t *facts, char *out,
                          size_t cap)
{
    size_t n = 0;
    for (const char *p = tpl; *p && n + 1 < cap;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (!close) {
            out[n++] = *p++;
            continue;
        }
        nmc_val_t v;
        read_text(job, p + 1, (size_t)(close - p - 1), facts, &v);
        char val[256];
        format_val(&v, val, sizeof val);
        n += (size_t)snprintf(out + n, cap - n, "%s", val);
        if (n >= cap) n = cap - 1;
        p = close + 1;
    }
    out[n] = 0;
}

/* Where a rule's diagnostic points: the `at` value when written, else another written value
 * of the rule, else the deepest written object on the `at` path, else the spec itself. */
static const nmc_json_t *rule_node(const nmc_job_t *job, const nmc_rule_desc_t *r)
{
    bool exact;
    const nmc_json_t *fallback = NULL, *n;
    if (r->has_at) {
        n = ref_node(job, &r->at, &exact);
        if (exact) return n;
        fallback = n;
    }
    const nmc_ref_t *cands[32];
    int nc = 0;
    if (r->kind == NMC_RULE_DIVISIBLE) {
        cands[nc++] = &r->value;
        for (int i = 0; i < r->n_by && nc < 32; i++) cands[nc++] = &r->by[i];
    }
    if (r->kind == NMC_RULE_REQUIRE) cands[nc++] = &r->field;
    for (int i = 0; i < r->n_when && nc < 32; i++) cands[nc++] = &r->when[i].ref;
    for (int i = 0; i < nc; i++) {
        n = ref_node(job, cands[i], &exact);
        if (exact) return n;
    }
    if (fallback) return fallback;
    return *(const nmc_json_t *const *)((const char *)job->spec + job->backend->root->json_off);
}

static void emit(const nmc_job_t *job, const nmc_rule_desc_t *r, const char *msg, const nmc_model_facts_t *facts,
                 nmc_diags_t *diags)
{
    const nmc_json_t *node = rule_node(job, r);
    nmc_diag_t *d = nmc_diag_add(diags, (nmc_severity_t)r->severity, r->code, job->file, node ? node->line : 0,
                                 node ? node->col : 0, node ? node->offset : 0, "%s", msg);
    nmc_path_t p;
    ref_path(job, r->has_at ? &r->at : &r->value, &p);
    nmc_diag_set_path(d, &p);
    if (r->help) {
        char help[MSG_MAX];
        fill_template(job, r->help, facts, help, sizeof help);
        nmc_diag_set_help(d, "%s", help);
    }
}

/* "batch.global_batch_size 10 is not divisible by micro_batch_size × data_parallel_size = 4 × 2 = 8;
 *  nearest valid: 8 or 16"; returns false when the rule holds or cannot be checked. */
static bool divisible_message(const nmc_job_t *job, const nmc_rule_desc_t *r, const nmc_model_facts_t *facts,
                              char *msg, size_t cap)
{
    nmc_val_t v;
    nmc_ref_read(job, &r->value, facts, &v);
    if (!v.present || v.bad || v.unknown || !v.scalar || v.v.kind != NMC_LIT_INT) return false;
    char names[512] = "", nums[256] = "";
    size_t nn = 0, nu = 0;
    int64_t prod = 1;
    for (int i = 0; i < r->n_by; i++) {
        nmc_val_t f;
        nmc_ref_read(job, &r->by[i], facts, &f);
        if (!f.present || f.bad || f.unknown || !f.scalar || f.v.kind != NMC_LIT_INT) return false;
        if (__builtin_mul_overflow(prod, f.v.i, &prod)) return false;
        nn += (size_t)snprintf(names + nn, sizeof names - nn, "%s%s", i ? " × " : "", r->by[i].name);
        nu += (size_t)snprintf(nums + nu, sizeof nums - nu, "%s%lld", i ? " × " : "", (long long)f.v.i);
        if (nn >= sizeof names || nu >= sizeof nums) return false;
    }
    if (prod <= 0 || v.v.i % prod == 0) return false;
    int64_t x = v.v.i, lower = x - (x % prod), upper = lower + prod;
    if (x < 0) lower -= prod, upper -= prod;
    const char *what = r->value.kind == NMC_REF_FIELD ? r->value.text : r->value.name;
    const char *dflt = r->value.kind == NMC_REF_FIELD && !v.given ? " (default)" : "";
    size_t n = (size_t)snprintf(msg, cap, "%s%s %lld%s is not divisible by %s = %s", r->value.kind == NMC_REF_MODEL ? "the model's " : "",
                                what, (long long)x, dflt, names, nums);
    if (r->n_by > 1 && n < cap) n += (size_t)snprintf(msg + n, cap - n, " = %lld", (long long)prod);
    if (r->value.kind == NMC_REF_FIELD && n < cap) {
        if (lower > 0) snprintf(msg + n, cap - n, "; nearest valid: %lld or %lld", (long long)lower, (long long)upper);
        else snprintf(msg + n, cap - n, "; nearest valid: %lld", (long long)upper);
    }
    return true;
}

size_t nmc_rules_check(const nmc_job_t *job, const nmc_model_facts_t *facts, bool model_pass, nmc_diags_t *diags)
{
    const nmc_backend_desc_t *b = job->backend;
    size_t errors = 0;
    if (!job->spec || !job->derived) return 0;
    for (size_t i = 0; i < b->n_rules; i++) {
        const nmc_rule_desc_t *r = &b->rules[i];
        if (r->needs_model != model_pass) continue;
        if (r->n_when && all_hold(job, r->when, r->n_when, facts) != 1) continue;
        char msg[MSG_MAX];
        if (r->kind == NMC_RULE_DIVISIBLE) {
            if (!divisible_message(job, r, facts, msg, sizeof msg)) continue;
        } else if (r->kind == NMC_RULE_REQUIRE) {
            nmc_val_t v;
            nmc_ref_read(job, &r->field, facts, &v);
            if (v.present || v.bad) continue;
            fill_template(job, r->message, facts, msg, sizeof msg);
        } else {
            fill_template(job, r->message, facts, msg, sizeof msg);
        }
        emit(job, r, msg, facts, diags);
        if (r->severity == NMC_SEV_ERROR) errors++;
    }
    return errors;
}
