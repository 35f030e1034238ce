// libcurl for Swift: curl_easy_setopt/getinfo are C variadics, so each argument type gets a
// typed wrapper (as swift-corelibs-foundation's CFURLSessionInterface does).
#ifndef ENVMOUNT_CCURL_SHIM_H
#define ENVMOUNT_CCURL_SHIM_H
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>

static inline CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_share(CURL *h, CURLSH *v) { return curl_easy_setopt(h, CURLOPT_SHARE, v); }
static inline CURLcode ccurl_setopt_write_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fn);
}
static inline CURLcode ccurl_setopt_read_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_READFUNCTION, fn);
}
static inline CURLcode ccurl_setopt_header_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, fn);
}
static inline CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }

static inline CURLcode ccurl_global_init(void) { return curl_global_init(CURL_GLOBAL_ALL); }

// A share object whose DNS and TLS-session caches may be used by easy handles on many threads:
// libcurl needs lock callbacks for that, one mutex per kind of shared data. The object lives as
// long as the process (one per client; clients are long-lived), so it is never freed.
typedef struct ccurl_share_state {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
} ccurl_share_state;

static inline void ccurl_share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u) {
    (void)h; (void)a;
    pthread_mutex_lock(&((ccurl_share_state *)u)->locks[d]);
}
static inline void ccurl_share_unlock(CURL *h, curl_lock_data d, void *u) {
    (void)h;
    pthread_mutex_unlock(&((ccurl_share_state *)u)->locks[d]);
}

/// A share handle for DNS and TLS sessions (and, if asked, the connection cache).
static inline CURLSH *ccurl_share_create(int share_connections) {
    ccurl_share_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&s->locks[i], NULL);
    s->share = curl_share_init();
    if (!s->share) { free(s); return NULL; }
    curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, ccurl_share_lock);
    curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, ccurl_share_unlock);
    curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (share_connections) curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return s->share;
}
#endif
