#include "ccurl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    char *(*version)(void);
    CURLSH *(*share_init)(void);
    CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[600];
static int loaded;

static int resolve(void *lib, const char *name, void **slot) {
    *slot = dlsym(lib, name);
    if (*slot) return 1;
    snprintf(load_error, sizeof load_error, "libcurl.so.4 lacks %s: it is older than envmount needs (7.75 or later)", name);
    return 0;
}

static void load(void) {
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error,
                 "cannot load libcurl, which HTTP and S3 stores need (%s); install it: apt-get install libcurl4", dlerror());
        return;
    }
    if (!resolve(lib, "curl_global_init", (void **)&fn.global_init) || !resolve(lib, "curl_easy_init", (void **)&fn.easy_init)
        || !resolve(lib, "curl_easy_cleanup", (void **)&fn.easy_cleanup) || !resolve(lib, "curl_easy_reset", (void **)&fn.easy_reset)
        || !resolve(lib, "curl_easy_perform", (void **)&fn.easy_perform) || !resolve(lib, "curl_easy_setopt", (void **)&fn.easy_setopt)
        || !resolve(lib, "curl_easy_getinfo", (void **)&fn.easy_getinfo) || !resolve(lib, "curl_easy_strerror", (void **)&fn.easy_strerror)
        || !resolve(lib, "curl_slist_append", (void **)&fn.slist_append) || !resolve(lib, "curl_slist_free_all", (void **)&fn.slist_free_all)
        || !resolve(lib, "curl_version", (void **)&fn.version) || !resolve(lib, "curl_share_init", (void **)&fn.share_init)
        || !resolve(lib, "curl_share_setopt", (void **)&fn.share_setopt)) return;
    if (fn.global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        snprintf(load_error, sizeof load_error, "curl_global_init failed");
        return;
    }
    loaded = 1;
}

const char *ccurl_load(void) {
    pthread_once(&once, load);
    return loaded ? NULL : load_error;
}

CURL *ccurl_easy_init(void) { return fn.easy_init(); }
void ccurl_easy_cleanup(CURL *h) { fn.easy_cleanup(h); }
void ccurl_easy_reset(CURL *h) { fn.easy_reset(h); }
CURLcode ccurl_easy_perform(CURL *h) { return fn.easy_perform(h); }
const char *ccurl_easy_strerror(CURLcode c) { return fn.easy_strerror(c); }
struct curl_slist *ccurl_slist_append(struct curl_slist *l, const char *s) { return fn.slist_append(l, s); }
void ccurl_slist_free_all(struct curl_slist *l) { fn.slist_free_all(l); }
const char *ccurl_version(void) { return fn.version(); }

CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v) { return fn.easy_setopt(h, o, v); }
CURLcode ccurl_setopt_ptr(CURL *h, CURLoption o, void *v) { return fn.easy_setopt(h, o, v); }
CURLcode ccurl_setopt_str(CURL *h, CURLoption o, const char *v) { return fn.easy_setopt(h, o, v); }
CURLcode ccurl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return fn.easy_setopt(h, o, v); }
CURLcode ccurl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return fn.easy_setopt(h, o, v); }
CURLcode ccurl_setopt_share(CURL *h, CURLSH *v) { return fn.easy_setopt(h, CURLOPT_SHARE, v); }
CURLcode ccurl_setopt_write_fn(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return fn.easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
CURLcode ccurl_setopt_read_fn(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return fn.easy_setopt(h, CURLOPT_READFUNCTION, f); }
CURLcode ccurl_setopt_header_fn(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return fn.easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }
CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *v) { return fn.easy_getinfo(h, i, v); }
CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return fn.easy_getinfo(h, i, v); }
CURLcode ccurl_getinfo_double(CURL *h, CURLINFO i, double *v) { return fn.easy_getinfo(h, i, v); }

typedef struct {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
} share_state;

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u) {
    (void)h; (void)a;
    pthread_mutex_lock(&((share_state *)u)->locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u) {
    (void)h;
    pthread_mutex_unlock(&((share_state *)u)->locks[d]);
}

CURLSH *ccurl_share_create(int share_connections) {
    share_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&s->locks[i], NULL);
    s->share = fn.share_init();
    if (!s->share) { free(s); return NULL; }
    fn.share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock);
    fn.share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    fn.share_setopt(s->share, CURLSHOPT_USERDATA, s);
    fn.share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    fn.share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (share_connections) fn.share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return s->share;
}
