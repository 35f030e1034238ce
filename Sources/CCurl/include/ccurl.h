// libcurl for Swift, loaded on first use. The binaries do not link libcurl: its ~25 shared
// libraries (TLS, Kerberos, LDAP, SSH, IDN, ...) cost every cold start of every command ~27 ms
// on the dev VM, and only HTTP and S3 stores need them. `ccurl_load` dlopens libcurl.so.4 once;
// every other function here calls through the resolved pointers and must come after a
// successful load. The header gives the types and constants (libcurl4-openssl-dev at build).
// curl_easy_setopt/getinfo are C variadics, so each argument type gets a typed wrapper.
#ifndef ENVMOUNT_CCURL_H
#define ENVMOUNT_CCURL_H
#include <curl/curl.h>

/// Loads libcurl and runs curl_global_init, once per process. NULL when it is ready; else a
/// sentence that names the library and says what to install.
const char *ccurl_load(void);

CURL *ccurl_easy_init(void);
void ccurl_easy_cleanup(CURL *h);
void ccurl_easy_reset(CURL *h);
CURLcode ccurl_easy_perform(CURL *h);
const char *ccurl_easy_strerror(CURLcode c);
struct curl_slist *ccurl_slist_append(struct curl_slist *l, const char *s);
void ccurl_slist_free_all(struct curl_slist *l);
const char *ccurl_version(void);

CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v);
CURLcode ccurl_setopt_ptr(CURL *h, CURLoption o, void *v);
CURLcode ccurl_setopt_str(CURL *h, CURLoption o, const char *v);
CURLcode ccurl_setopt_off(CURL *h, CURLoption o, curl_off_t v);
CURLcode ccurl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v);
CURLcode ccurl_setopt_share(CURL *h, CURLSH *v);
CURLcode ccurl_setopt_write_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *));
CURLcode ccurl_setopt_read_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *));
CURLcode ccurl_setopt_header_fn(CURL *h, size_t (*fn)(char *, size_t, size_t, void *));
CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *v);
CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v);
CURLcode ccurl_getinfo_double(CURL *h, CURLINFO i, double *v);

/// A share handle for DNS and TLS sessions (and, if asked, the connection cache) whose caches
/// may be used by easy handles on many threads (one mutex per kind of shared data). It lives as
/// long as the process (one per client; clients are long-lived), so it is never freed.
CURLSH *ccurl_share_create(int share_connections);
#endif
