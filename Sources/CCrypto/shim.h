// SHA-256 from the system's OpenSSL libcrypto: SHA-NI accelerated, nothing to build.
#ifndef ENVMOUNT_CCRYPTO_SHIM_H
#define ENVMOUNT_CCRYPTO_SHIM_H
#include <openssl/sha.h>
#endif
