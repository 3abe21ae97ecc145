/* The listening matcher's hot path, in C: normalising a post into words, finding every query key
 * in it, and evaluating the queries the hits bring in. hubbub/lib/query.py holds the language
 * (parsing, which clause a query is indexed under, field values) and drives this module; read
 * its docstring first. Why C: normalising a non-ASCII post in Python alone cost three times a
 * bare Aho-Corasick scan of it, and the issue asks for all the matching to cost at most two.
 *
 * Normalised text is " word word ... ": NFKC, case folded, every character that is not a letter,
 * digit or combining mark a separator, "i" + U+0307 (what case folding makes of "İ") read as
 * "i". Keys are " word ", " word word " (a phrase) and " prefix" (a wildcard), so matching is
 * word by word: a hash lookup per word, one per wildcard length in use, and a comparison of
 * the following words for phrases. No text ever becomes a regular expression.
 *
 * What a non-ASCII character folds to is asked of Python once per character per process
 * (query._fold_entry) and kept in a table. A character whose normal form could combine with a
 * neighbour (a combining mark, a Hangul vowel) makes the whole post go through
 * unicodedata.normalize("NFKC") first; every other character normalises on its own.
 *
 * Not thread-safe: one Matcher per worker. A Matcher refuses to be entered twice at once
 * (Python callbacks could switch threads mid-match) rather than corrupt its scratch state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* --- Small growable arrays ------------------------------------------------------------------ */

typedef struct {
    int32_t *v;
    Py_ssize_t n, cap;
} IntVec;

static int
iv_push(IntVec *a, int32_t x)
{
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? a->cap * 2 : 8;
        int32_t *v = PyMem_Realloc(a->v, (size_t)cap * sizeof(int32_t));
        if (v == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static void
iv_remove(IntVec *a, int32_t x)
{
    for (Py_ssize_t i = 0; i < a->n; i++) {
        if (a->v[i] == x) {
            a->v[i] = a->v[--a->n]; /* order never matters where this is used */
            return;
        }
    }
}

static void
iv_free(IntVec *a)
{
    PyMem_Free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static int
grow(void **buffer, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t next = *cap ? *cap : 64;
    while (next < need)
        next *= 2;
    void *grown = PyMem_Realloc(*buffer, (size_t)next * size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buffer = grown;
    *cap = next;
    return 0;
}

/* --- Folding characters ---------------------------------------------------------------------- */

typedef struct {
    uint8_t context; /* its NFKC form could compose or reorder with a neighbour */
    uint8_t len;
    uint32_t cps[];
} Fold;

static Fold **fold_pages[0x110000 >> 8];
static PyObject *folder;         /* query._fold_entry: char -> (folded text, context) */
static PyObject *normalize_func; /* unicodedata.normalize */
static PyObject *nfkc_name;
static uint32_t ascii_fold[128];

static const Fold *
get_fold(uint32_t cp)
{
    Fold **page = fold_pages[cp >> 8];
    if (page != NULL && page[cp & 255] != NULL)
        return page[cp & 255];
    if (folder == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "hubbub.lib._match: set_folder() was never called");
        return NULL;
    }
    if (page == NULL) {
        page = PyMem_RawCalloc(256, sizeof(Fold *));
        if (page == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        fold_pages[cp >> 8] = page;
    }
    PyObject *ch = PyUnicode_FromOrdinal((int)cp);
    if (ch == NULL)
        return NULL;
    PyObject *result = PyObject_CallOneArg(folder, ch);
    Py_DECREF(ch);
    if (result == NULL)
        return NULL;
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(result, 0))) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_TypeError, "the folder must return (str, bool)");
        return NULL;
    }
    PyObject *text = PyTuple_GET_ITEM(result, 0);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    int context = PyObject_IsTrue(PyTuple_GET_ITEM(result, 1));
    if (context < 0 || len > 255) {
        Py_DECREF(result);
        if (context >= 0)
            PyErr_SetString(PyExc_ValueError, "a character cannot fold to more than 255 characters");
        return NULL;
    }
    Fold *fold = PyMem_RawMalloc(sizeof(Fold) + (size_t)len * sizeof(uint32_t));
    if (fold == NULL) {
        Py_DECREF(result);
        PyErr_NoMemory();
        return NULL;
    }
    fold->context = (uint8_t)context;
    fold->len = (uint8_t)len;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < len; i++)
        fold->cps[i] = PyUnicode_READ(kind, data, i);
    Py_DECREF(result);
    if (page[cp & 255] != NULL) {
        /* another thread filled it while the folder ran */
        PyMem_RawFree(fold);
        return page[cp & 255];
    }
    page[cp & 255] = fold;
    return fold;
}

/* A post as words: their characters one after another, and where each word starts. */
typedef struct {
    uint32_t *cps;
    Py_ssize_t n, cap;
    Py_ssize_t *start;
    Py_ssize_t *len;
    Py_ssize_t words, words_cap;
    int in_word;
    int absorbed; /* the word's last "i" already took its U+0307 */
} Words;

static void
words_free(Words *w)
{
    PyMem_Free(w->cps);
    PyMem_Free(w->start);
    PyMem_Free(w->len);
    memset(w, 0, sizeof(*w));
}

static inline int
emit(Words *w, uint32_t c)
{
    if (c == ' ') {
        w->in_word = 0;
        return 0;
    }
    if (c == 0x307 && w->in_word && w->cps[w->n - 1] == 'i' && !w->absorbed) {
        w->absorbed = 1;
        return 0;
    }
    if (w->n == w->cap && grow((void **)&w->cps, &w->cap, w->n + 1, sizeof(uint32_t)) < 0)
        return -1;
    if (!w->in_word) {
        if (w->words == w->words_cap) {
            Py_ssize_t cap = w->words_cap;
            if (grow((void **)&w->start, &cap, w->words + 1, sizeof(Py_ssize_t)) < 0)
                return -1;
            cap = w->words_cap;
            if (grow((void **)&w->len, &cap, w->words + 1, sizeof(Py_ssize_t)) < 0)
                return -1;
            w->words_cap = cap;
        }
        w->start[w->words] = w->n;
        w->len[w->words] = 0;
        w->words++;
        w->in_word = 1;
    }
    w->cps[w->n++] = c;
    w->len[w->words - 1]++;
    w->absorbed = 0;
    return 0;
}

/* Fold the first `limit` characters of `text` into words. Returns 1, having stopped, when
 * `check_context` is set and a character needs the whole text in NFKC first; -1 on error. */
static int
fold_text(PyObject *text, Py_ssize_t limit, int check_context, Words *w)
{
    w->n = w->words = 0;
    w->in_word = w->absorbed = 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (len > limit)
        len = limit;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < len; i++) {
        uint32_t cp = PyUnicode_READ(kind, data, i);
        if (cp < 128) {
            if (emit(w, ascii_fold[cp]) < 0)
                return -1;
            continue;
        }
        const Fold *fold = get_fold(cp);
        if (fold == NULL)
            return -1;
        if (check_context && fold->context)
            return 1;
        for (int j = 0; j < fold->len; j++) {
            if (emit(w, fold->cps[j]) < 0)
                return -1;
        }
    }
    return 0;
}

static int
normalise_into(PyObject *text, Py_ssize_t limit, Words *w)
{
    int found = fold_text(text, limit, 1, w);
    if (found <= 0)
        return found;
    PyObject *cut = PyUnicode_Substring(text, 0, limit);
    if (cut == NULL)
        return -1;
    PyObject *nfkc = PyObject_CallFunctionObjArgs(normalize_func, nfkc_name, cut, NULL);
    Py_DECREF(cut);
    if (nfkc == NULL)
        return -1;
    /* Every character of NFKC text is its own NFKC form, so it folds on its own. */
    found = fold_text(nfkc, PY_SSIZE_T_MAX, 0, w);
    Py_DECREF(nfkc);
    return found;
}

static PyObject *
words_to_text(const Words *w)
{
    /* " word word " and, for no words, two spaces: what query.normalise has always returned. */
    Py_ssize_t size = w->n + w->words + 1 + (w->words == 0);
    uint32_t *out = PyMem_Malloc((size_t)size * sizeof(uint32_t));
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t at = 0;
    out[at++] = ' ';
    for (Py_ssize_t i = 0; i < w->words; i++) {
        memcpy(out + at, w->cps + w->start[i], (size_t)w->len[i] * sizeof(uint32_t));
        at += w->len[i];
        out[at++] = ' ';
    }
    if (w->words == 0)
        out[at++] = ' ';
    PyObject *result = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, at);
    PyMem_Free(out);
    return result;
}

/* --- Word tables: exact words, and wildcard prefixes ------------------------------------------ */

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static inline uint64_t
hash_cps(const uint32_t *cps, Py_ssize_t len)
{
    uint64_t h = FNV_OFFSET;
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ cps[i]) * FNV_PRIME;
    return h;
}

typedef struct {
    uint64_t hash;
    uint32_t *cps;
    int32_t len; /* -1: a free entry */
    int32_t next;
    int32_t refs;
    int32_t key;    /* the " word " key or, in the prefix table, the " prefix" key; -1 for none */
    IntVec phrases; /* phrase keys that start with this word */
} Entry;

typedef struct {
    int32_t *buckets;
    Py_ssize_t nbuckets; /* a power of two */
    Entry *e;
    Py_ssize_t n, cap;
    int32_t free_head;
    Py_ssize_t live;
} Table;

static int
table_init(Table *t)
{
    memset(t, 0, sizeof(*t));
    t->nbuckets = 1024;
    t->buckets = PyMem_Malloc((size_t)t->nbuckets * sizeof(int32_t));
    if (t->buckets == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t->buckets, 0xff, (size_t)t->nbuckets * sizeof(int32_t));
    t->free_head = -1;
    return 0;
}

static void
table_free(Table *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++) {
        PyMem_Free(t->e[i].cps);
        iv_free(&t->e[i].phrases);
    }
    PyMem_Free(t->e);
    PyMem_Free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static inline int32_t
table_find(const Table *t, uint64_t hash, const uint32_t *cps, Py_ssize_t len)
{
    for (int32_t i = t->buckets[hash & (uint64_t)(t->nbuckets - 1)]; i >= 0; i = t->e[i].next) {
        const Entry *e = &t->e[i];
        if (e->hash == hash && e->len == len && memcmp(e->cps, cps, (size_t)len * sizeof(uint32_t)) == 0)
            return i;
    }
    return -1;
}

static int
table_rehash(Table *t, Py_ssize_t nbuckets)
{
    int32_t *buckets = PyMem_Malloc((size_t)nbuckets * sizeof(int32_t));
    if (buckets == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(buckets, 0xff, (size_t)nbuckets * sizeof(int32_t));
    for (Py_ssize_t i = 0; i < t->n; i++) {
        Entry *e = &t->e[i];
        if (e->len < 0)
            continue;
        Py_ssize_t b = (Py_ssize_t)(e->hash & (uint64_t)(nbuckets - 1));
        e->next = buckets[b];
        buckets[b] = (int32_t)i;
    }
    PyMem_Free(t->buckets);
    t->buckets = buckets;
    t->nbuckets = nbuckets;
    return 0;
}

/* The entry for these characters, made if missing; its refs counted up. */
static int32_t
table_take(Table *t, const uint32_t *cps, Py_ssize_t len)
{
    uint64_t hash = hash_cps(cps, len);
    int32_t found = table_find(t, hash, cps, len);
    if (found >= 0) {
        t->e[found].refs++;
        return found;
    }
    if (t->live * 2 >= t->nbuckets && table_rehash(t, t->nbuckets * 2) < 0)
        return -1;
    uint32_t *copy = PyMem_Malloc((size_t)(len ? len : 1) * sizeof(uint32_t));
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, cps, (size_t)len * sizeof(uint32_t));
    int32_t i = t->free_head;
    if (i >= 0) {
        t->free_head = t->e[i].next;
    }
    else {
        if (grow((void **)&t->e, &t->cap, t->n + 1, sizeof(Entry)) < 0) {
            PyMem_Free(copy);
            return -1;
        }
        i = (int32_t)t->n++;
    }
    Entry *e = &t->e[i];
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->cps = copy;
    e->len = (int32_t)len;
    e->refs = 1;
    e->key = -1;
    Py_ssize_t b = (Py_ssize_t)(hash & (uint64_t)(t->nbuckets - 1));
    e->next = t->buckets[b];
    t->buckets[b] = i;
    t->live++;
    return i;
}

static void
table_release(Table *t, int32_t i)
{
    Entry *e = &t->e[i];
    if (--e->refs > 0)
        return;
    int32_t *link = &t->buckets[e->hash & (uint64_t)(t->nbuckets - 1)];
    while (*link != i)
        link = &t->e[*link].next;
    *link = e->next;
    PyMem_Free(e->cps);
    iv_free(&e->phrases);
    e->cps = NULL;
    e->len = -1;
    e->next = t->free_head;
    t->free_head = i;
    t->live--;
}

/* --- Keys and queries ------------------------------------------------------------------------- */

enum { KEY_WORD, KEY_PREFIX, KEY_PHRASE };

typedef struct {
    PyObject *text; /* NULL: a free key */
    int kind;
    int32_t users;
    int32_t entry;  /* the word's entry (the phrase's first word) or the prefix's */
    int32_t *words; /* a phrase's word entries */
    int32_t nwords;
    IntVec triggers; /* query slots indexed under this key */
    uint32_t stamp;  /* == the matcher's post number: hit in this post */
} Key;

enum { OP_KEY, OP_NOT, OP_AND, OP_OR, OP_NEAR, OP_AUTHOR, OP_CHANNEL, OP_LANG, OP_URL };

typedef struct {
    int op;
    int32_t a, b, c, d; /* KEY: a=key. NOT: a=node. AND/OR: a=first kid, b=count. NEAR: keys a, b, sizes c, d */
    int32_t distance;
    PyObject *s1, *s2, *s3; /* field values (URL: host, "." + host, path) */
} Node;

typedef struct {
    PyObject *query_id; /* NULL: a free slot */
    long long id;
    Node *nodes;
    int32_t nnodes;
    int32_t *kids;
    IntVec keys;     /* every key taken, once per use, to give back on removal */
    IntVec triggers; /* distinct keys the query is indexed under */
    uint32_t stamp;  /* == the matcher's post number: already a candidate for this post */
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject *prepare; /* doc -> (author, lang, channel, host, path) */
    Py_ssize_t max_text;
    Table words;
    Table prefixes;
    int32_t *prefix_lens; /* prefix keys by length */
    Py_ssize_t prefix_lens_cap;
    Py_ssize_t min_prefix, max_prefix;
    Key *keys;
    Py_ssize_t nkeys, keys_cap;
    IntVec free_keys;
    PyObject *key_ids; /* key text -> key index */
    Slot *slots;
    Py_ssize_t nslots, slots_cap;
    IntVec free_slots;
    PyObject *slot_ids; /* query id -> slot index */
    uint32_t post;      /* posts matched, numbering the stamps */
    int busy;
    /* scratch for one post */
    Words text;
    int32_t *token_entry;
    Py_ssize_t token_cap;
    IntVec hits;        /* keys hit */
    IntVec occurrences; /* (key, word position) pairs */
    IntVec candidates;  /* slots to evaluate */
    IntVec left, right; /* NEAR positions */
    long long *matched;
    Py_ssize_t matched_cap;
    PyObject *fields; /* the post's prepared fields, once asked for */
    PyObject *doc;
} Matcher;

static void
key_release(Matcher *m, int32_t k)
{
    Key *key = &m->keys[k];
    if (--key->users > 0)
        return;
    if (key->kind == KEY_PREFIX) {
        Py_ssize_t len = m->prefixes.e[key->entry].len;
        m->prefix_lens[len]--;
        m->prefixes.e[key->entry].key = -1;
        table_release(&m->prefixes, key->entry);
    }
    else if (key->kind == KEY_WORD) {
        m->words.e[key->entry].key = -1;
        table_release(&m->words, key->entry);
    }
    else {
        iv_remove(&m->words.e[key->words[0]].phrases, k);
        for (int32_t i = 0; i < key->nwords; i++)
            table_release(&m->words, key->words[i]);
        PyMem_Free(key->words);
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback); /* keep the error a failed set_query() is reporting */
    if (PyDict_DelItem(m->key_ids, key->text) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    Py_CLEAR(key->text);
    key->words = NULL;
    iv_free(&key->triggers);
    iv_push(&m->free_keys, k); /* on failure the index is merely never reused */
}

static void
text_cps(PyObject *text, Py_ssize_t start, Py_ssize_t end, uint32_t *out)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = start; i < end; i++)
        out[i - start] = PyUnicode_READ(kind, data, i);
}

/* The key for this text (" word ", " two words ", " prefix"), made if missing; its users counted up. */
static int32_t
key_take(Matcher *m, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "a key must be a str");
        return -1;
    }
    PyObject *known = PyDict_GetItemWithError(m->key_ids, text);
    if (known != NULL) {
        int32_t k = (int32_t)PyLong_AsLong(known);
        m->keys[k].users++;
        return k;
    }
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (len < 2 || PyUnicode_READ_CHAR(text, 0) != ' ' || PyUnicode_READ_CHAR(text, 1) == ' ') {
        PyErr_Format(PyExc_ValueError, "not a key: %R", text);
        return -1;
    }
    int prefix = PyUnicode_READ_CHAR(text, len - 1) != ' ';
    Py_ssize_t end = prefix ? len : len - 1;
    /* Words of the key, between single spaces. */
    IntVec starts = {0};
    for (Py_ssize_t i = 1; i < end; i++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(text, i);
        Py_UCS4 before = PyUnicode_READ_CHAR(text, i - 1);
        if (c == ' ' && before == ' ') {
            iv_free(&starts);
            PyErr_Format(PyExc_ValueError, "not a key: %R", text);
            return -1;
        }
        if (c != ' ' && before == ' ' && iv_push(&starts, (int32_t)i) < 0) {
            iv_free(&starts);
            return -1;
        }
    }
    if (PyUnicode_READ_CHAR(text, end - 1) == ' ' || (prefix && starts.n != 1)) {
        iv_free(&starts);
        PyErr_Format(PyExc_ValueError, "not a key: %R", text);
        return -1;
    }
    int32_t k;
    if (m->free_keys.n > 0) {
        k = m->free_keys.v[--m->free_keys.n];
    }
    else {
        if (grow((void **)&m->keys, &m->keys_cap, m->nkeys + 1, sizeof(Key)) < 0) {
            iv_free(&starts);
            return -1;
        }
        k = (int32_t)m->nkeys++;
    }
    Key *key = &m->keys[k];
    memset(key, 0, sizeof(*key));
    uint32_t *cps = PyMem_Malloc((size_t)len * sizeof(uint32_t));
    int32_t *entries = PyMem_Malloc((size_t)starts.n * sizeof(int32_t));
    if (cps == NULL || entries == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    text_cps(text, 0, len, cps);
    Py_ssize_t taken = 0;
    Table *table = prefix ? &m->prefixes : &m->words;
    for (; taken < starts.n; taken++) {
        Py_ssize_t from = starts.v[taken];
        Py_ssize_t to = taken + 1 < starts.n ? starts.v[taken + 1] - 1 : end;
        entries[taken] = table_take(table, cps + from, to - from);
        if (entries[taken] < 0)
            goto undo;
    }
    if (prefix) {
        Py_ssize_t plen = end - 1;
        if (grow((void **)&m->prefix_lens, &m->prefix_lens_cap, plen + 1, sizeof(int32_t)) < 0)
            goto undo;
        /* grow() leaves new room uninitialised */
        for (Py_ssize_t i = m->max_prefix + 1; i <= plen; i++)
            m->prefix_lens[i] = 0;
        if (plen > m->max_prefix)
            m->max_prefix = plen;
        if (m->min_prefix == 0 || plen < m->min_prefix)
            m->min_prefix = plen;
        m->prefix_lens[plen]++;
        key->kind = KEY_PREFIX;
        m->prefixes.e[entries[0]].key = k;
        key->entry = entries[0];
        PyMem_Free(entries);
    }
    else if (starts.n == 1) {
        key->kind = KEY_WORD;
        m->words.e[entries[0]].key = k;
        key->entry = entries[0];
        PyMem_Free(entries);
    }
    else {
        if (iv_push(&m->words.e[entries[0]].phrases, k) < 0)
            goto undo;
        key->kind = KEY_PHRASE;
        key->entry = entries[0];
        key->words = entries;
        key->nwords = (int32_t)starts.n;
    }
    PyMem_Free(cps);
    iv_free(&starts);
    PyObject *id = PyLong_FromLong(k);
    if (id == NULL || PyDict_SetItem(m->key_ids, text, id) < 0) {
        Py_XDECREF(id);
        key->text = Py_NewRef(text);
        key->users = 1;
        key_release(m, k);
        return -1;
    }
    Py_DECREF(id);
    key->text = Py_NewRef(text);
    key->users = 1;
    return k;
undo:
    while (taken-- > 0)
        table_release(table, entries[taken]);
fail:
    PyMem_Free(cps);
    PyMem_Free(entries);
    iv_free(&starts);
    iv_push(&m->free_keys, k);
    return -1;
}

/* Give back what a query took; `s` is its slot, or -1 when it was never linked to its triggers. */
static void
slot_free(Matcher *m, Slot *slot, int32_t s)
{
    for (Py_ssize_t i = 0; s >= 0 && i < slot->triggers.n; i++)
        iv_remove(&m->keys[slot->triggers.v[i]].triggers, s);
    for (Py_ssize_t i = 0; i < slot->keys.n; i++)
        key_release(m, slot->keys.v[i]);
    for (int32_t i = 0; i < slot->nnodes; i++) {
        Py_CLEAR(slot->nodes[i].s1);
        Py_CLEAR(slot->nodes[i].s2);
        Py_CLEAR(slot->nodes[i].s3);
    }
    PyMem_Free(slot->nodes);
    PyMem_Free(slot->kids);
    iv_free(&slot->keys);
    iv_free(&slot->triggers);
    Py_CLEAR(slot->query_id);
    slot->nodes = NULL;
    slot->kids = NULL;
    slot->nnodes = 0;
}

static const char *const OP_NAMES[] = {"key", "not", "and", "or", "near", "author", "channel", "lang", "url"};

/* Build a query's nodes from its program (see query._program) into `slot`, taking its keys. */
static int
slot_build(Matcher *m, Slot *slot, PyObject *program)
{
    PyObject *items = PySequence_Fast(program, "a program must be a sequence of tuples");
    if (items == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n == 0 || n > 100000) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "a program needs between 1 and 100,000 nodes");
        return -1;
    }
    slot->nodes = PyMem_Calloc((size_t)n, sizeof(Node));
    IntVec kids = {0};
    if (slot->nodes == NULL) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        Node *node = &slot->nodes[i];
        slot->nnodes = (int32_t)(i + 1);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_Format(PyExc_ValueError, "program node %zd is not (name, ...)", i);
            goto fail;
        }
        Py_ssize_t size = PyTuple_GET_SIZE(item);
        int op = -1;
        for (int o = 0; o < (int)(sizeof(OP_NAMES) / sizeof(OP_NAMES[0])); o++) {
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(item, 0), OP_NAMES[o]) == 0)
                op = o;
        }
        node->op = op;
        PyObject *first = PyTuple_GET_ITEM(item, 1);
        switch (op) {
        case OP_KEY:
            node->a = key_take(m, first);
            if (node->a < 0 || iv_push(&slot->keys, node->a) < 0)
                goto fail;
            break;
        case OP_NOT:
            node->a = (int32_t)PyLong_AsLong(first);
            if (PyErr_Occurred() || node->a < 0 || node->a >= i) {
                PyErr_Format(PyExc_ValueError, "program node %zd: bad child", i);
                goto fail;
            }
            break;
        case OP_AND:
        case OP_OR: {
            PyObject *children = PySequence_Fast(first, "children must be a sequence");
            if (children == NULL)
                goto fail;
            node->a = (int32_t)kids.n;
            node->b = (int32_t)PySequence_Fast_GET_SIZE(children);
            for (Py_ssize_t c = 0; c < node->b; c++) {
                long child = PyLong_AsLong(PySequence_Fast_GET_ITEM(children, c));
                if (PyErr_Occurred() || child < 0 || child >= i || iv_push(&kids, (int32_t)child) < 0) {
                    Py_DECREF(children);
                    if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
                        PyErr_Clear();
                        PyErr_Format(PyExc_ValueError, "program node %zd: bad child", i);
                    }
                    goto fail;
                }
            }
            Py_DECREF(children);
            break;
        }
        case OP_NEAR: {
            long left = PyLong_AsLong(first);
            long right = size == 4 ? PyLong_AsLong(PyTuple_GET_ITEM(item, 2)) : -1;
            long distance = size == 4 ? PyLong_AsLong(PyTuple_GET_ITEM(item, 3)) : -1;
            if (PyErr_Occurred() || left < 0 || left >= i || right < 0 || right >= i || distance < 0 ||
                slot->nodes[left].op != OP_KEY || slot->nodes[right].op != OP_KEY) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "program node %zd: NEAR takes two key nodes and a distance", i);
                goto fail;
            }
            const Key *lk = &m->keys[slot->nodes[left].a];
            const Key *rk = &m->keys[slot->nodes[right].a];
            node->a = slot->nodes[left].a;
            node->b = slot->nodes[right].a;
            node->c = lk->kind == KEY_PHRASE ? lk->nwords : 1;
            node->d = rk->kind == KEY_PHRASE ? rk->nwords : 1;
            node->distance = (int32_t)distance;
            break;
        }
        case OP_AUTHOR:
        case OP_CHANNEL:
        case OP_LANG:
        case OP_URL: {
            Py_ssize_t want = op == OP_URL ? 3 : 2;
            if (size != want || !PyUnicode_Check(first) || (op == OP_URL && !PyUnicode_Check(PyTuple_GET_ITEM(item, 2)))) {
                PyErr_Format(PyExc_ValueError, "program node %zd: bad field", i);
                goto fail;
            }
            node->s1 = Py_NewRef(first);
            if (op == OP_LANG) {
                node->s2 = PyUnicode_FromFormat("%U-", first);
            }
            else if (op == OP_URL) {
                node->s2 = PyUnicode_FromFormat(".%U", first);
                node->s3 = Py_NewRef(PyTuple_GET_ITEM(item, 2));
            }
            if ((op == OP_LANG || op == OP_URL) && node->s2 == NULL)
                goto fail;
            break;
        }
        default:
            PyErr_Format(PyExc_ValueError, "program node %zd: unknown operation %R", i, PyTuple_GET_ITEM(item, 0));
            goto fail;
        }
    }
    Py_DECREF(items);
    slot->kids = kids.v;
    return 0;
fail:
    Py_DECREF(items);
    iv_free(&kids);
    return -1;
}

/* --- Matching one post ------------------------------------------------------------------------- */

static inline int
hit(Matcher *m, int32_t k, int32_t position)
{
    Key *key = &m->keys[k];
    if (key->stamp != m->post) {
        key->stamp = m->post;
        if (iv_push(&m->hits, k) < 0)
            return -1;
    }
    if (iv_push(&m->occurrences, k) < 0 || iv_push(&m->occurrences, position) < 0)
        return -1;
    return 0;
}

/* Find every key in the post's words. */
static int
scan(Matcher *m)
{
    Words *w = &m->text;
    if (grow((void **)&m->token_entry, &m->token_cap, w->words, sizeof(int32_t)) < 0)
        return -1;
    int any_phrase = 0;
    for (Py_ssize_t t = 0; t < w->words; t++) {
        const uint32_t *cps = w->cps + w->start[t];
        Py_ssize_t len = w->len[t];
        uint64_t h = FNV_OFFSET;
        for (Py_ssize_t j = 0; j < len; j++) {
            h = (h ^ cps[j]) * FNV_PRIME;
            Py_ssize_t plen = j + 1;
            if (plen >= m->min_prefix && plen <= m->max_prefix && m->min_prefix > 0 && m->prefix_lens[plen] > 0) {
                int32_t p = table_find(&m->prefixes, h, cps, plen);
                if (p >= 0 && m->prefixes.e[p].key >= 0 && hit(m, m->prefixes.e[p].key, (int32_t)t) < 0)
                    return -1;
            }
        }
        int32_t e = m->words.live ? table_find(&m->words, h, cps, len) : -1;
        m->token_entry[t] = e;
        if (e >= 0) {
            if (m->words.e[e].key >= 0 && hit(m, m->words.e[e].key, (int32_t)t) < 0)
                return -1;
            any_phrase |= m->words.e[e].phrases.n > 0;
        }
    }
    if (!any_phrase)
        return 0;
    for (Py_ssize_t t = 0; t < w->words; t++) {
        int32_t e = m->token_entry[t];
        if (e < 0)
            continue;
        const IntVec *phrases = &m->words.e[e].phrases;
        for (Py_ssize_t p = 0; p < phrases->n; p++) {
            const Key *key = &m->keys[phrases->v[p]];
            if (t + key->nwords > w->words)
                continue;
            int32_t i = 1;
            while (i < key->nwords && m->token_entry[t + i] == key->words[i])
                i++;
            if (i == key->nwords && hit(m, phrases->v[p], (int32_t)t) < 0)
                return -1;
        }
    }
    return 0;
}

static int
positions(Matcher *m, int32_t k, IntVec *out)
{
    out->n = 0;
    for (Py_ssize_t i = 0; i < m->occurrences.n; i += 2) {
        if (m->occurrences.v[i] == k && iv_push(out, m->occurrences.v[i + 1]) < 0)
            return -1;
    }
    return 0;
}

/* Index of the first value in sorted v[0..n) greater than x. */
static Py_ssize_t
after(const int32_t *v, Py_ssize_t n, int32_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (v[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* a NEAR/n b: an occurrence of each, not overlapping, with at most n words between them. */
static int
near(Matcher *m, const Node *node)
{
    if (m->keys[node->a].stamp != m->post || m->keys[node->b].stamp != m->post)
        return 0;
    if (positions(m, node->a, &m->left) < 0 || positions(m, node->b, &m->right) < 0)
        return -1;
    const int32_t *right = m->right.v;
    Py_ssize_t nright = m->right.n;
    for (Py_ssize_t i = 0; i < m->left.n; i++) {
        int32_t start = m->left.v[i];
        int32_t end = start + node->c - 1;
        Py_ssize_t next = after(right, nright, end);
        if (next < nright && right[next] - end - 1 <= node->distance)
            return 1;
        Py_ssize_t before = after(right, nright, start - node->d) - 1;
        if (before >= 0 && start - (right[before] + node->d - 1) - 1 <= node->distance)
            return 1;
    }
    return 0;
}

static PyObject *
field(Matcher *m, int index)
{
    if (m->fields == NULL) {
        PyObject *fields = PyObject_CallOneArg(m->prepare, m->doc);
        if (fields == NULL)
            return NULL;
        if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 5) {
            Py_DECREF(fields);
            PyErr_SetString(PyExc_TypeError, "prepare() must return (author, lang, channel, host, path)");
            return NULL;
        }
        for (int i = 0; i < 5; i++) {
            if (!PyUnicode_Check(PyTuple_GET_ITEM(fields, i))) {
                Py_DECREF(fields);
                PyErr_SetString(PyExc_TypeError, "prepare() must return five str");
                return NULL;
            }
        }
        m->fields = fields;
    }
    return PyTuple_GET_ITEM(m->fields, index);
}

static int
same(PyObject *a, PyObject *b)
{
    return PyUnicode_Compare(a, b) == 0; /* both are str: no error is possible */
}

static int
evaluate(Matcher *m, const Slot *slot, int32_t at)
{
    const Node *node = &slot->nodes[at];
    switch (node->op) {
    case OP_KEY:
        return m->keys[node->a].stamp == m->post;
    case OP_NOT: {
        int r = evaluate(m, slot, node->a);
        return r < 0 ? r : !r;
    }
    case OP_AND:
        for (int32_t i = 0; i < node->b; i++) {
            int r = evaluate(m, slot, slot->kids[node->a + i]);
            if (r <= 0)
                return r;
        }
        return 1;
    case OP_OR:
        for (int32_t i = 0; i < node->b; i++) {
            int r = evaluate(m, slot, slot->kids[node->a + i]);
            if (r != 0)
                return r;
        }
        return 0;
    case OP_NEAR:
        return near(m, node);
    case OP_AUTHOR:
    case OP_CHANNEL: {
        PyObject *value = field(m, node->op == OP_AUTHOR ? 0 : 2);
        return value == NULL ? -1 : same(value, node->s1);
    }
    case OP_LANG: {
        PyObject *lang = field(m, 1);
        if (lang == NULL)
            return -1;
        return same(lang, node->s1) || PyUnicode_Tailmatch(lang, node->s2, 0, PY_SSIZE_T_MAX, -1) == 1;
    }
    case OP_URL: {
        PyObject *host = field(m, 3);
        PyObject *path = field(m, 4);
        if (host == NULL || path == NULL)
            return -1;
        int on_host = same(host, node->s1) || PyUnicode_Tailmatch(host, node->s2, 0, PY_SSIZE_T_MAX, 1) == 1;
        return on_host && PyUnicode_Tailmatch(path, node->s3, 0, PY_SSIZE_T_MAX, -1) == 1;
    }
    }
    return 0;
}

static int
candidate(Matcher *m, int32_t s)
{
    if (m->slots[s].stamp == m->post)
        return 0;
    m->slots[s].stamp = m->post;
    return iv_push(&m->candidates, s);
}

static int
compare_ids(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void
next_post(Matcher *m)
{
    if (++m->post == 0) {
        /* Stamps wrapped after 2^32 posts: forget every old one. */
        for (Py_ssize_t k = 0; k < m->nkeys; k++)
            m->keys[k].stamp = 0;
        for (Py_ssize_t s = 0; s < m->nslots; s++)
            m->slots[s].stamp = 0;
        m->post = 1;
    }
}

static PyObject *
match_post(Matcher *m, PyObject *text, PyObject *doc, PyObject *extra)
{
    next_post(m);
    m->hits.n = m->occurrences.n = m->candidates.n = 0;
    if (m->keys != NULL && m->nkeys > 0) {
        if (normalise_into(text, m->max_text, &m->text) < 0 || scan(m) < 0)
            return NULL;
        for (Py_ssize_t i = 0; i < m->hits.n; i++) {
            const IntVec *triggers = &m->keys[m->hits.v[i]].triggers;
            for (Py_ssize_t j = 0; j < triggers->n; j++) {
                if (candidate(m, triggers->v[j]) < 0)
                    return NULL;
            }
        }
    }
    if (extra != Py_None) {
        /* Queries indexed under a field value the post has (query._field_matches). */
        PyObject *groups = PySequence_Fast(extra, "extra must be a sequence of sets of query ids");
        if (groups == NULL)
            return NULL;
        for (Py_ssize_t g = 0; g < PySequence_Fast_GET_SIZE(groups); g++) {
            PyObject *iterator = PyObject_GetIter(PySequence_Fast_GET_ITEM(groups, g));
            if (iterator == NULL) {
                Py_DECREF(groups);
                return NULL;
            }
            PyObject *query_id;
            while ((query_id = PyIter_Next(iterator)) != NULL) {
                PyObject *s = PyDict_GetItemWithError(m->slot_ids, query_id);
                Py_DECREF(query_id);
                if (s != NULL && candidate(m, (int32_t)PyLong_AsLong(s)) < 0)
                    break;
                if (s == NULL && PyErr_Occurred())
                    break;
            }
            Py_DECREF(iterator);
            if (PyErr_Occurred()) {
                Py_DECREF(groups);
                return NULL;
            }
        }
        Py_DECREF(groups);
    }
    if (m->candidates.n == 0)
        return PyList_New(0);
    if (grow((void **)&m->matched, &m->matched_cap, m->candidates.n, sizeof(long long)) < 0)
        return NULL;
    m->doc = doc;
    Py_ssize_t found = 0;
    for (Py_ssize_t i = 0; i < m->candidates.n; i++) {
        const Slot *slot = &m->slots[m->candidates.v[i]];
        int r = evaluate(m, slot, slot->nnodes - 1);
        if (r < 0)
            return NULL;
        if (r)
            m->matched[found++] = slot->id;
    }
    qsort(m->matched, (size_t)found, sizeof(long long), compare_ids);
    PyObject *result = PyList_New(found);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < found; i++) {
        PyObject *id = PyLong_FromLongLong(m->matched[i]);
        if (id == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, id);
    }
    return result;
}

/* --- The Python type ---------------------------------------------------------------------------- */

static int
Matcher_init(Matcher *m, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"prepare", "max_text", NULL};
    PyObject *prepare;
    Py_ssize_t max_text;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &prepare, &max_text))
        return -1;
    if (m->key_ids != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Matcher is initialised once");
        return -1;
    }
    if (!PyCallable_Check(prepare) || max_text < 1) {
        PyErr_SetString(PyExc_ValueError, "Matcher(prepare: callable, max_text: int >= 1)");
        return -1;
    }
    m->prepare = Py_NewRef(prepare);
    m->max_text = max_text;
    m->key_ids = PyDict_New();
    m->slot_ids = PyDict_New();
    if (m->key_ids == NULL || m->slot_ids == NULL || table_init(&m->words) < 0 || table_init(&m->prefixes) < 0)
        return -1;
    return 0;
}

static void
Matcher_dealloc(Matcher *m)
{
    for (Py_ssize_t s = 0; s < m->nslots; s++) {
        if (m->slots[s].query_id != NULL)
            slot_free(m, &m->slots[s], (int32_t)s);
    }
    for (Py_ssize_t k = 0; k < m->nkeys; k++) {
        Py_CLEAR(m->keys[k].text);
        PyMem_Free(m->keys[k].words);
        iv_free(&m->keys[k].triggers);
    }
    PyMem_Free(m->keys);
    PyMem_Free(m->slots);
    PyMem_Free(m->prefix_lens);
    iv_free(&m->free_keys);
    iv_free(&m->free_slots);
    table_free(&m->words);
    table_free(&m->prefixes);
    words_free(&m->text);
    PyMem_Free(m->token_entry);
    iv_free(&m->hits);
    iv_free(&m->occurrences);
    iv_free(&m->candidates);
    iv_free(&m->left);
    iv_free(&m->right);
    PyMem_Free(m->matched);
    Py_CLEAR(m->key_ids);
    Py_CLEAR(m->slot_ids);
    Py_CLEAR(m->prepare);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static int
enter(Matcher *m)
{
    if (m->key_ids == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Matcher.__init__ was not called");
        return -1;
    }
    if (m->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a Matcher is used by one thread at a time");
        return -1;
    }
    m->busy = 1;
    return 0;
}

static void
leave(Matcher *m)
{
    m->busy = 0;
}

static int
remove_query(Matcher *m, PyObject *query_id)
{
    PyObject *s = PyDict_GetItemWithError(m->slot_ids, query_id);
    if (s == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int32_t slot = (int32_t)PyLong_AsLong(s);
    if (PyDict_DelItem(m->slot_ids, query_id) < 0)
        return -1;
    slot_free(m, &m->slots[slot], slot);
    return iv_push(&m->free_slots, slot);
}

PyDoc_STRVAR(set_query_doc, "set_query(query_id: int, program: list[tuple], triggers: list[str])\n\n"
                            "Add or replace a query: its program (see query._program) and the keys it is indexed under.");

static PyObject *
Matcher_set_query(Matcher *m, PyObject *args)
{
    PyObject *query_id, *program, *triggers;
    if (!PyArg_ParseTuple(args, "O!OO", &PyLong_Type, &query_id, &program, &triggers) || enter(m) < 0)
        return NULL;
    Slot built = {0};
    long long id = PyLong_AsLongLong(query_id);
    PyObject *trigger_list = NULL;
    if ((id == -1 && PyErr_Occurred()) || slot_build(m, &built, program) < 0)
        goto fail;
    trigger_list = PySequence_Fast(triggers, "triggers must be a sequence of keys");
    if (trigger_list == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(trigger_list); i++) {
        int32_t k = key_take(m, PySequence_Fast_GET_ITEM(trigger_list, i));
        if (k < 0 || iv_push(&built.keys, k) < 0) {
            if (k >= 0)
                key_release(m, k);
            goto fail;
        }
        int seen = 0;
        for (Py_ssize_t j = 0; j < built.triggers.n; j++)
            seen |= built.triggers.v[j] == k;
        if (!seen && iv_push(&built.triggers, k) < 0)
            goto fail;
    }
    Py_CLEAR(trigger_list);
    /* The new query's keys are taken before the old one's are given back, so shared keys stay. */
    if (remove_query(m, query_id) < 0)
        goto fail;
    int32_t s;
    if (m->free_slots.n > 0) {
        s = m->free_slots.v[--m->free_slots.n];
    }
    else {
        if (grow((void **)&m->slots, &m->slots_cap, m->nslots + 1, sizeof(Slot)) < 0)
            goto fail;
        s = (int32_t)m->nslots++;
    }
    PyObject *index = PyLong_FromLong(s);
    if (index == NULL || PyDict_SetItem(m->slot_ids, query_id, index) < 0) {
        Py_XDECREF(index);
        iv_push(&m->free_slots, s);
        goto fail;
    }
    Py_DECREF(index);
    for (Py_ssize_t i = 0; i < built.triggers.n; i++) {
        if (iv_push(&m->keys[built.triggers.v[i]].triggers, s) < 0) {
            /* out of memory: undo the links made so far, then the whole query */
            for (Py_ssize_t j = 0; j < i; j++)
                iv_remove(&m->keys[built.triggers.v[j]].triggers, s);
            PyDict_DelItem(m->slot_ids, query_id);
            iv_push(&m->free_slots, s);
            goto fail;
        }
    }
    built.query_id = Py_NewRef(query_id);
    built.id = id;
    built.stamp = 0;
    m->slots[s] = built;
    leave(m);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(trigger_list);
    slot_free(m, &built, -1); /* give back what the half-built query took */
    leave(m);
    return NULL;
}

static PyObject *
Matcher_remove_query(Matcher *m, PyObject *query_id)
{
    if (enter(m) < 0)
        return NULL;
    int r = remove_query(m, query_id);
    leave(m);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(match_doc, "match(text: str, doc, extra: list[set[int]] | None) -> list[int]\n\n"
                        "Ids of the queries the post matches, sorted. `doc` goes to prepare() if a query asks for a\n"
                        "field; `extra` holds ids of queries the post's field values bring in.");

static PyObject *
Matcher_match(Matcher *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "match(text: str, doc, extra)");
        return NULL;
    }
    if (enter(m) < 0)
        return NULL;
    PyObject *result = match_post(m, args[0], args[1], args[2]);
    Py_CLEAR(m->fields);
    m->doc = NULL;
    leave(m);
    return result;
}

static PyObject *
Matcher_sizes(Matcher *m, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:n,s:n,s:n,s:n}", "keys", PyDict_GET_SIZE(m->key_ids), "queries",
                         PyDict_GET_SIZE(m->slot_ids), "words", m->words.live, "prefixes", m->prefixes.live);
}

static PyMethodDef Matcher_methods[] = {
    {"set_query", (PyCFunction)Matcher_set_query, METH_VARARGS, set_query_doc},
    {"remove_query", (PyCFunction)Matcher_remove_query, METH_O, "remove_query(query_id: int): forget a query"},
    {"match", (PyCFunction)(void (*)(void))Matcher_match, METH_FASTCALL, match_doc},
    {"sizes", (PyCFunction)Matcher_sizes, METH_NOARGS, "counts of live keys, queries, words and prefixes"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hubbub.lib._match.Matcher",
    .tp_basicsize = sizeof(Matcher),
    .tp_dealloc = (destructor)Matcher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Matcher(prepare, max_text): many listening queries matched against posts"),
    .tp_methods = Matcher_methods,
    .tp_init = (initproc)Matcher_init,
    .tp_new = PyType_GenericNew,
};

/* --- Module functions --------------------------------------------------------------------------- */

static PyObject *
module_normalise(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "normalise() takes a str");
        return NULL;
    }
    /* Its own buffer: the folder is Python, and another thread may normalise while it runs. */
    Words words = {0};
    PyObject *result = normalise_into(text, PY_SSIZE_T_MAX, &words) < 0 ? NULL : words_to_text(&words);
    words_free(&words);
    return result;
}

static PyObject *
module_set_folder(PyObject *Py_UNUSED(module), PyObject *callable)
{
    if (!PyCallable_Check(callable)) {
        PyErr_SetString(PyExc_TypeError, "set_folder() takes a callable");
        return NULL;
    }
    Py_XSETREF(folder, Py_NewRef(callable));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"normalise", module_normalise, METH_O, "normalise(text) -> ' word word ': see hubbub.lib.query.normalise"},
    {"set_folder", module_set_folder, METH_O,
     "set_folder(fold_entry): what a non-ASCII character folds to, (text, needs whole-text NFKC)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hubbub.lib._match", "Listening queries matched in C: see hubbub/lib/query.py", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__match(void)
{
    for (uint32_t c = 0; c < 128; c++) {
        if (c >= 'A' && c <= 'Z')
            ascii_fold[c] = c + 32;
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            ascii_fold[c] = c;
        else
            ascii_fold[c] = ' ';
    }
    PyObject *unicodedata = PyImport_ImportModule("unicodedata");
    if (unicodedata == NULL)
        return NULL;
    normalize_func = PyObject_GetAttrString(unicodedata, "normalize");
    Py_DECREF(unicodedata);
    nfkc_name = PyUnicode_InternFromString("NFKC");
    if (normalize_func == NULL || nfkc_name == NULL || PyType_Ready(&MatcherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Matcher", (PyObject *)&MatcherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
