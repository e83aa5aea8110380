/* schema_rt.h — the descriptor types that the generated schema tables (generated/schema.gen.c,
 * produced by codegen/c.lua from the files in schema/) fill in, and the value types of the generated
 * job structs. Hand-written; the only code that walks these tables is runtime/job.c (loading,
 * defaults, explain) and runtime/rules.c (derived values, cross-field rules).
 *
 * A loaded job is a tree of generated C structs, one per schema object. Every struct ends with
 * four bit arrays indexed by field number (NMC_<OBJECT>__<FIELD> constants in schema.gen.h):
 *   nmc_given  the user wrote the key (also when the value was null);
 *   nmc_has    the member holds a value (written or defaulted);
 *   nmc_null   the value is an explicit or default null (nmc_has is then 0);
 *   nmc_bad    the written value failed validation (rules skip such fields);
 * plus `nmc_json`, the source JSON object it was loaded from (NULL when defaulted).
 * Absent = !nmc_has && !nmc_null.
 */
#ifndef NMC_SCHEMA_RT_H
#define NMC_SCHEMA_RT_H
#include "json.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- value types used by generated struct members ---------------------------------------- */

typedef struct { const char *const *v; size_t n; } nmc_str_list_t;  /* list of strings */
typedef struct { const int64_t *v; size_t n; } nmc_int_list_t;      /* list of integers */
typedef struct { const double *v; size_t n; } nmc_float_list_t;     /* list of numbers */

/* A union-typed value: the validated JSON, which variant matched (0-based), and for an object
 * variant the loaded struct (cast to the variant's generated type), else NULL. */
typedef struct {
    const nmc_json_t *json;
    int variant;
    void *obj;
} nmc_union_t;

/* Bit helpers over the generated uint64_t arrays. */
#define NMC_BIT_GET(arr, i) ((((arr)[(i) >> 6]) >> ((i)&63)) & 1u)
#define NMC_BIT_SET(arr, i) ((arr)[(i) >> 6] |= (UINT64_C(1) << ((i)&63)))
#define NMC_BIT_CLR(arr, i) ((arr)[(i) >> 6] &= ~(UINT64_C(1) << ((i)&63)))
/* On a generated struct pointer `s` and a field constant `f`: */
#define nmc_field_given(s, f) NMC_BIT_GET((s)->nmc_given, (f))
#define nmc_field_has(s, f) NMC_BIT_GET((s)->nmc_has, (f))
#define nmc_field_null(s, f) NMC_BIT_GET((s)->nmc_null, (f))

/* ---- descriptors -------------------------------------------------------------------------- */

typedef enum {
    NMC_T_BOOL,
    NMC_T_INT,
    NMC_T_FLOAT,
    NMC_T_STRING,
    NMC_T_ENUM,
    NMC_T_OBJECT,
    NMC_T_LIST,
    NMC_T_MAP,
    NMC_T_ANY_OBJECT,
    NMC_T_UNION,
    NMC_T_CONST
} nmc_type_kind_t;

/* How a field's value sits in its struct. */
typedef enum {
    NMC_FSTORE_BOOL,       /* bool */
    NMC_FSTORE_INT,        /* int64_t */
    NMC_FSTORE_FLOAT,      /* double */
    NMC_FSTORE_STRING,     /* const char * (NUL-terminated, arena/tree owned) */
    NMC_FSTORE_ENUM,       /* int-sized C enum: index into the enum's names */
    NMC_FSTORE_OBJECT,     /* the nested struct, embedded */
    NMC_FSTORE_OBJECT_PTR, /* pointer to the nested struct (nullable objects); NULL when unset */
    NMC_FSTORE_STR_LIST,   /* nmc_str_list_t */
    NMC_FSTORE_INT_LIST,   /* nmc_int_list_t */
    NMC_FSTORE_FLOAT_LIST, /* nmc_float_list_t */
    NMC_FSTORE_UNION,      /* nmc_union_t */
    NMC_FSTORE_JSON,       /* const nmc_json_t * (maps, any_object, other lists, non-string const) */
    NMC_FSTORE_NONE        /* no member: a meta key ("$schema"), checked and otherwise ignored */
} nmc_field_store_t;

/* Named string patterns: the JSON Schema carries the regex, C implements each by hand
 * (runtime/job.c, nmc_pattern_match). codegen/c.lua refuses a pattern it does not know. */
typedef enum {
    NMC_PAT_NONE = 0,
    NMC_PAT_SECRET_REF,   /* ^[a-z0-9_-]+(/[a-z0-9_-]+)?$ */
    NMC_PAT_WORKSPACE_REF, /* ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ */
    NMC_PAT_GPU_LIST       /* ^[0-9]+(,[0-9]+)*$ */
} nmc_pattern_t;

/* Bound flags of a type (numeric bounds). */
enum {
    NMC_B_GE = 1,
    NMC_B_GT = 2,
    NMC_B_LE = 4,
    NMC_B_LT = 8
};

/* Field flags. */
enum {
    NMC_F_REQUIRED = 1u << 0,
    NMC_F_NULLABLE = 1u << 1,
    NMC_F_HAS_DEFAULT = 1u << 2,
    NMC_F_DEFAULT_NULL = 1u << 3,  /* the default is null */
    NMC_F_REMOVED = 1u << 4,       /* always rejected with `removed` as the message */
    NMC_F_ALIAS = 1u << 5,         /* deprecated alias of field `alias_of` */
    NMC_F_AUTOFILL = 1u << 6,      /* filled with object defaults when `autofill` holds */
    NMC_F_META = 1u << 7           /* document metadata ("$schema"): no member (NMC_FSTORE_NONE) */
};

typedef struct {
    const char *const *names; /* the literals in documented order */
    size_t n;
} nmc_enum_desc_t;

typedef struct nmc_object_desc nmc_object_desc_t;
typedef struct nmc_type_desc nmc_type_desc_t;

struct nmc_type_desc {
    uint8_t kind;      /* nmc_type_kind_t */
    uint8_t bounds;    /* NMC_B_* */
    uint8_t pattern;   /* nmc_pattern_t */
    bool nullable;     /* (items/variants) null accepted */
    int8_t when_json;  /* union variant: nmc_json_kind_t that selects it, -1 = none */
    int32_t min_len;   /* strings: minimum length in code points, 0 = none */
    double lo, hi;     /* bounds (ge/gt in lo, le/lt in hi) */
    const nmc_enum_desc_t *enm;      /* enum */
    const nmc_object_desc_t *obj;    /* object */
    const nmc_type_desc_t *sub;      /* list items, map values */
    const nmc_type_desc_t *variants; /* union */
    uint8_t n_variants;
    const char *const_json;          /* const: the literal as JSON text */
    const char *label;               /* how to name the type in messages: "integer", ... */
};

/* A default value. Scalars are typed; anything else is JSON text loaded like user input. */
typedef struct {
    bool b;
    int64_t i;
    double d;
    const char *s;   /* string, or the enum literal */
    int e;           /* enum index */
    const char *const *sl; /* NMC_FSTORE_STR_LIST */
    const int64_t *il;     /* NMC_FSTORE_INT_LIST */
    const double *fl;      /* NMC_FSTORE_FLOAT_LIST */
    size_t n;              /* list length */
    const char *json;      /* objects ("{}" = every default), maps, unions, other lists */
} nmc_default_t;

/* A path from the spec root: a chain of field indices, a derived value or a model fact.
 * A step through a union field continues into the union's first object variant. */
typedef enum { NMC_REF_FIELD, NMC_REF_DERIVED, NMC_REF_MODEL } nmc_ref_kind_t;
typedef struct {
    uint8_t kind;           /* nmc_ref_kind_t */
    uint8_t n;              /* chain length (NMC_REF_FIELD) */
    const uint16_t *chain;  /* field index at each level */
    int16_t derived;        /* NMC_REF_DERIVED: index into the backend's derived table */
    const char *text;       /* as written in the schema: "batch.micro_batch_size", "$total_gpus" */
    const char *name;       /* short name for messages: last segment, derived/fact name */
} nmc_ref_t;

typedef enum { NMC_LIT_NULL, NMC_LIT_BOOL, NMC_LIT_INT, NMC_LIT_FLOAT, NMC_LIT_STRING } nmc_lit_kind_t;
typedef struct {
    uint8_t kind; /* nmc_lit_kind_t */
    bool b;
    int64_t i;
    double d;
    const char *s;
} nmc_lit_t;

typedef enum {
    NMC_OP_EQ, NMC_OP_NE, NMC_OP_GT, NMC_OP_GE, NMC_OP_LT, NMC_OP_LE, NMC_OP_IN,
    NMC_OP_STARTS_WITH, NMC_OP_SET, NMC_OP_UNSET, NMC_OP_GIVEN
} nmc_op_t;

typedef struct {
    nmc_ref_t ref;
    uint8_t op;             /* nmc_op_t */
    nmc_lit_t lit;          /* comparison value */
    const nmc_lit_t *list;  /* NMC_OP_IN */
    uint8_t n_list;
} nmc_clause_t;

typedef struct nmc_field_desc {
    const char *name;
    uint16_t name_len;
    uint16_t index;         /* position in its object, = bit number */
    uint8_t store;          /* nmc_field_store_t */
    uint32_t flags;         /* NMC_F_* */
    size_t offset;          /* offsetof the member */
    nmc_type_desc_t type;
    nmc_default_t def;      /* valid when NMC_F_HAS_DEFAULT and not NMC_F_DEFAULT_NULL */
    int16_t alias_of;       /* NMC_F_ALIAS: the sibling's index */
    const char *removed;    /* NMC_F_REMOVED: the message */
    const nmc_clause_t *autofill; /* NMC_F_AUTOFILL */
    uint8_t n_autofill;
    const char *type_help;  /* help line when the JSON kind is wrong, may be NULL */
    const char *doc;
} nmc_field_desc_t;

struct nmc_object_desc {
    const char *name;       /* schema name, "AutomodelBatch" */
    const char *c_name;     /* "nmc_automodel_batch_t" */
    const char *doc;
    size_t size;            /* sizeof the struct */
    size_t given_off, has_off, null_off, bad_off, json_off; /* bookkeeping members */
    const nmc_field_desc_t *fields;
    uint16_t n_fields;
    int (*lookup)(const char *key, size_t len); /* field index, -1 when unknown */
};

typedef enum { NMC_RULE_DIVISIBLE, NMC_RULE_FORBID, NMC_RULE_REQUIRE } nmc_rule_kind_t;
typedef struct {
    const char *code;
    uint8_t kind;           /* nmc_rule_kind_t */
    uint8_t severity;       /* nmc_severity_t (error or warning) */
    bool needs_model;       /* checked by nmc_job_check_model, not at load */
    nmc_ref_t value;        /* divisible: the dividend */
    const nmc_ref_t *by;    /* divisible: the factors of the divisor */
    uint8_t n_by;
    const nmc_clause_t *when; /* forbid/require (and optional on divisible) */
    uint8_t n_when;
    nmc_ref_t field;        /* require: the field that must be set */
    bool has_at;
    nmc_ref_t at;           /* where the diagnostic points */
    const char *message;    /* template with {path} / {$derived} placeholders; NULL = generated */
    const char *help;
    const char *facts;
} nmc_rule_desc_t;

typedef enum { NMC_DERIVE_PRODUCT, NMC_DERIVE_QUOTIENT, NMC_DERIVE_CASES } nmc_derive_kind_t;
typedef struct {
    const nmc_clause_t *when; /* NULL = the default case */
    uint8_t n_when;
    nmc_lit_t value;
} nmc_derive_case_t;
typedef struct {
    const char *name;
    uint8_t kind;           /* nmc_derive_kind_t */
    const nmc_ref_t *operands; /* product: factors; quotient: [dividend] */
    uint8_t n_operands;
    const nmc_ref_t *divisors; /* quotient: the divisor's factors */
    uint8_t n_divisors;
    const nmc_derive_case_t *cases;
    uint8_t n_cases;
    const char *doc;
} nmc_derive_desc_t;

/* `other` is a path of the other backend; `ours` the paths that play its part here. */
typedef struct {
    const char *other;
    const char *const *ours;
    size_t n;
    const char *note;       /* how the mapping works when it is more than a rename; may be NULL */
} nmc_equiv_t;

typedef struct nmc_backend_desc {
    const char *name;       /* "automodel" */
    int id;                 /* NMC_BACKEND_* */
    const char *doc;
    const char *schema_id;  /* "$id" of its JSON Schema, may be NULL */
    const char *schema_file; /* "automodel.schema.json" ($schema last path component) */
    const nmc_object_desc_t *root;
    const nmc_object_desc_t *envelope; /* the request envelope {name, spec, ...}; NULL = none */
    const nmc_rule_desc_t *rules;
    size_t n_rules;
    const nmc_derive_desc_t *derived;
    size_t n_derived;
    const nmc_equiv_t *equivalents; /* sorted by `other` */
    size_t n_equivalents;
    const char *json_schema; /* the generated JSON Schema text ("" when not generated) */
} nmc_backend_desc_t;

#endif
