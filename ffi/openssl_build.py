"""cffi build script (API mode) for the OpenSSL 3 TLS binding: `firmware._ffi._openssl`.

What it binds: a TLS client `SSL*` driven over two memory BIOs (ciphertext in, ciphertext out), and
a private key whose signatures are made by Python. The key is an `EVP_PKEY` over an `EC_KEY` that
carries the public key of the client certificate and an `EC_KEY_METHOD` copied from OpenSSL's
default with its `sign_sig` replaced: OpenSSL hands it the digest to sign, it calls the Python
function `ek_sign_digest` (an `extern "Python"` callback, given the `void *` signer stored in the
key's ex_data), and turns the DER signature Python returns into the `ECDSA_SIG` OpenSSL expects.
So the private key never enters this process: the key service signs wherever the key lives.

The `EC_KEY` API is deprecated in OpenSSL 3.0 and still the one way to plug a signer into libssl
without a provider; the deprecation warnings are silenced with `OPENSSL_SUPPRESS_DEPRECATED`.

Layout as pyca/cryptography's bindings: INCLUDES (C only), TYPES and FUNCTIONS (declared to cffi
and compiled), CUSTOMIZATIONS (C only). `EK_OPENSSL_BINDING_VERSION` is compiled in from
`firmware/_ffi/__init__.py`, which refuses an extension built from another version.

Needs the OpenSSL 3 headers (`libssl-dev`). Run `python ffi/openssl_build.py` to put the
extension in `firmware/_ffi/`; build.py imports this module and calls `ffibuilder.compile`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ffi/: the scripts' shared module
from extension import binding_version

BINDING_VERSION = binding_version("OPENSSL_BINDING_VERSION")

INCLUDES = """
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
"""

# Opaque OpenSSL types, the constants Python needs (cffi reads their values from the headers),
# and the binding's own result codes.
TYPES = """
typedef ... SSL_CTX;
typedef ... SSL;
typedef ... SSL_METHOD;
typedef ... BIO;
typedef ... BIO_METHOD;
typedef ... X509_VERIFY_PARAM;

#define SSL_ERROR_NONE ...
#define SSL_ERROR_SSL ...
#define SSL_ERROR_WANT_READ ...
#define SSL_ERROR_WANT_WRITE ...
#define SSL_ERROR_SYSCALL ...
#define SSL_ERROR_ZERO_RETURN ...
#define SSL_VERIFY_PEER ...
#define SSL_OP_NO_RENEGOTIATION ...
#define SSL_OP_NO_COMPRESSION ...
#define TLS1_2_VERSION ...
#define TLS1_3_VERSION ...
#define X509_V_OK ...

static const int EK_OK;
static const int EK_NO_CERTIFICATE;
static const int EK_NOT_EC_P256;
static const int EK_NO_CA_CERTIFICATE;
static const int EK_OPENSSL_FAILED;
static const int EK_OPENSSL_BINDING_VERSION;
static const int EK_MAX_SIGNATURE;
"""

FUNCTIONS = """
unsigned long OpenSSL_version_num(void);

unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);

const SSL_METHOD *TLS_client_method(void);
SSL_CTX *SSL_CTX_new(const SSL_METHOD *method);
void SSL_CTX_free(SSL_CTX *ctx);
long SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t options);
void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *callback);
int SSL_CTX_set_default_verify_paths(SSL_CTX *ctx);
long SSL_CTX_set1_client_sigalgs_list(SSL_CTX *ctx, const char *list);

SSL *SSL_new(SSL_CTX *ctx);
void SSL_free(SSL *ssl);
void SSL_set_connect_state(SSL *ssl);
void SSL_set_bio(SSL *ssl, BIO *rbio, BIO *wbio);
int SSL_set1_host(SSL *ssl, const char *hostname);
long SSL_set_tlsext_host_name(SSL *ssl, const char *name);
X509_VERIFY_PARAM *SSL_get0_param(SSL *ssl);
int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *param, const char *ipasc);
int SSL_do_handshake(SSL *ssl);
int SSL_is_init_finished(const SSL *ssl);
int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes);
int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written);
int SSL_shutdown(SSL *ssl);
int SSL_get_error(const SSL *ssl, int ret);
long SSL_get_verify_result(const SSL *ssl);
const char *X509_verify_cert_error_string(long n);
const char *SSL_get_version(const SSL *ssl);

const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *type);
int BIO_free(BIO *bio);
int BIO_write(BIO *bio, const void *data, int dlen);
int BIO_read(BIO *bio, void *data, int dlen);
size_t BIO_ctrl_pending(BIO *bio);

int ek_use_certificate_chain(SSL_CTX *ctx, const char *pem, size_t pem_len, void *signer);
int ek_load_verify_pem(SSL_CTX *ctx, const char *pem, size_t pem_len);

extern "Python" int ek_sign_digest(void *signer, const unsigned char *digest, size_t digest_len,
                                   unsigned char *signature, size_t *signature_len);
"""

CUSTOMIZATIONS = """
static int ek_sign_digest(void *signer, const unsigned char *digest, size_t digest_len,
                          unsigned char *signature, size_t *signature_len);

static CRYPTO_ONCE ek_once = CRYPTO_ONCE_STATIC_INIT;
static int ek_signer_index = -1;
static EC_KEY_METHOD *ek_delegated_method = NULL;

/* OpenSSL's ECDSA signing, ending in Python: the digest goes to the signer stored in the key,
   whose DER signature becomes the ECDSA_SIG. NULL (a failed signature) when the signer fails. */
static ECDSA_SIG *ek_delegated_sign_sig(const unsigned char *digest, int digest_len,
                                        const BIGNUM *kinv, const BIGNUM *r, EC_KEY *key)
{
    unsigned char der[EK_MAX_SIGNATURE];
    size_t der_len = sizeof der;
    const unsigned char *cursor = der;
    void *signer = EC_KEY_get_ex_data(key, ek_signer_index);

    (void)kinv;
    (void)r;
    if (signer == NULL || digest_len < 0) {
        return NULL;
    }
    if (ek_sign_digest(signer, digest, (size_t)digest_len, der, &der_len) != 0
            || der_len > sizeof der) {
        return NULL;
    }
    return d2i_ECDSA_SIG(NULL, &cursor, (long)der_len);
}

static void ek_init_once(void)
{
    int (*sign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
                const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
    int (*sign_setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;

    ek_signer_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ek_delegated_method = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    if (ek_delegated_method == NULL) {
        return;
    }
    EC_KEY_METHOD_get_sign(ek_delegated_method, &sign, &sign_setup, NULL);
    EC_KEY_METHOD_set_sign(ek_delegated_method, sign, sign_setup, ek_delegated_sign_sig);
}

/* An EVP_PKEY with the public key of `certificate` (EC P-256) whose signatures `signer` makes. */
static int ek_delegated_key(X509 *certificate, void *signer, EVP_PKEY **out)
{
    EVP_PKEY *public_key = X509_get0_pubkey(certificate);
    EC_KEY *key = NULL;
    EVP_PKEY *pkey = NULL;

    *out = NULL;
    if (!CRYPTO_THREAD_run_once(&ek_once, ek_init_once) || ek_delegated_method == NULL
            || ek_signer_index < 0) {
        return EK_OPENSSL_FAILED;
    }
    if (public_key == NULL || EVP_PKEY_get_base_id(public_key) != EVP_PKEY_EC) {
        return EK_NOT_EC_P256;
    }
    key = EVP_PKEY_get1_EC_KEY(public_key);
    if (key == NULL) {
        return EK_OPENSSL_FAILED;
    }
    if (EC_GROUP_get_curve_name(EC_KEY_get0_group(key)) != NID_X9_62_prime256v1) {
        EC_KEY_free(key);
        return EK_NOT_EC_P256;
    }
    if (!EC_KEY_set_method(key, ek_delegated_method)
            || !EC_KEY_set_ex_data(key, ek_signer_index, signer)
            || (pkey = EVP_PKEY_new()) == NULL) {
        EC_KEY_free(key);
        return EK_OPENSSL_FAILED;
    }
    if (!EVP_PKEY_assign_EC_KEY(pkey, key)) {
        EC_KEY_free(key);
        EVP_PKEY_free(pkey);
        return EK_OPENSSL_FAILED;
    }
    *out = pkey;
    return EK_OK;
}

/* Whether the error queue's last entry is PEM's "no start line": the end of a PEM bundle. */
static int ek_end_of_pem(void)
{
    unsigned long error = ERR_peek_last_error();
    return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

/* The client certificate (the first of `pem`), its chain (the rest) and the delegated key. */
int ek_use_certificate_chain(SSL_CTX *ctx, const char *pem, size_t pem_len, void *signer)
{
    BIO *bio;
    X509 *leaf;
    X509 *link;
    EVP_PKEY *pkey = NULL;
    int result = EK_OPENSSL_FAILED;

    if (pem_len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int)pem_len)) == NULL) {
        return EK_OPENSSL_FAILED;
    }
    leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (leaf == NULL) {
        BIO_free(bio);
        return EK_NO_CERTIFICATE;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        goto done;
    }
    while ((link = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(ctx, link)) {
            X509_free(link);
            goto done;
        }
    }
    if (!ek_end_of_pem()) {
        goto done;
    }
    ERR_clear_error();
    result = ek_delegated_key(leaf, signer, &pkey);
    if (result != EK_OK) {
        goto done;
    }
    result = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 ? EK_OK : EK_OPENSSL_FAILED;
    EVP_PKEY_free(pkey);
done:
    X509_free(leaf);
    BIO_free(bio);
    return result;
}

/* Trust exactly the CA certificates in `pem` (at least one) for the server's chain. */
int ek_load_verify_pem(SSL_CTX *ctx, const char *pem, size_t pem_len)
{
    BIO *bio;
    X509 *certificate;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    int ok = 1;

    if (pem_len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int)pem_len)) == NULL) {
        return EK_OPENSSL_FAILED;
    }
    while (ok && (certificate = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        ok = X509_STORE_add_cert(store, certificate);
        X509_free(certificate);
        count += ok;
    }
    BIO_free(bio);
    if (!ok || !ek_end_of_pem()) {
        return EK_OPENSSL_FAILED;
    }
    ERR_clear_error();
    return count > 0 ? EK_OK : EK_NO_CA_CERTIFICATE;
}
"""

RESULTS: dict[str, int] = {
    "EK_OK": 0,
    "EK_NO_CERTIFICATE": 1,
    "EK_NOT_EC_P256": 2,
    "EK_NO_CA_CERTIFICATE": 3,
    "EK_OPENSSL_FAILED": 4,
}

# The longest DER ECDSA signature the callback accepts (P-256 needs 72; room for P-521).
MAX_SIGNATURE = 160


def _defines() -> str:
    lines = [f"#define {name} {value}" for name, value in RESULTS.items()]
    lines.append(f"#define EK_OPENSSL_BINDING_VERSION {BINDING_VERSION}")
    lines.append(f"#define EK_MAX_SIGNATURE {MAX_SIGNATURE}")
    return "\n".join(lines) + "\n"


C_SOURCE = INCLUDES + _defines() + CUSTOMIZATIONS

ffibuilder = cffi.FFI()
ffibuilder.set_source("firmware._ffi._openssl", C_SOURCE, libraries=["ssl", "crypto"])
ffibuilder.cdef(TYPES + FUNCTIONS)


def main() -> None:
    """Build by hand (see ffi/extension.py)."""
    from extension import compile_into_package

    print(compile_into_package(ffibuilder, "openssl"))


if __name__ == "__main__":
    main()
