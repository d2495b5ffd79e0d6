"""cffi build script (API mode) for the PKCS#11 binding: `firmware._ffi._pkcs11`.

The binding carries its own subset of the PKCS#11 v2.40 header (the types, constants and function
list layout edgekeeper uses, written from the OASIS specification), so no vendor header is needed at
build time. Vendor modules are loaded at run time: `ek_pkcs11_load` dlopens a path and calls its
`C_GetFunctionList`; Python then calls the module through the returned `CK_FUNCTION_LIST`.

The layout follows pyca/cryptography's bindings: INCLUDES (C only), TYPES and FUNCTIONS (declared
to cffi and compiled), CUSTOMIZATIONS (C only). `EK_PKCS11_BINDING_VERSION` is compiled in from
`firmware/_ffi/__init__.py`, which refuses to import an extension built from another version.

Run `python ffi/pkcs11_build.py` to put the extension in `firmware/_ffi/`; build.py imports this
module and calls `ffibuilder.compile(tmpdir=..., verbose=False)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ffi/: the scripts' shared module
from extension import binding_version

BINDING_VERSION = binding_version("PKCS11_BINDING_VERSION")

# Constants from the PKCS#11 v2.40 specification, all CK_ULONG. Return values (CKR_*) are listed
# in firmware/keys/pkcs11/errors.py with their meaning; the unit tests check the two agree.
CONSTANTS: dict[str, int] = {
    "CK_FALSE": 0,
    "CK_TRUE": 1,
    "CK_INVALID_HANDLE": 0,
    "CK_UNAVAILABLE_INFORMATION": 0xFFFFFFFFFFFFFFFF,
    # Object classes.
    "CKO_DATA": 0x0,
    "CKO_CERTIFICATE": 0x1,
    "CKO_PUBLIC_KEY": 0x2,
    "CKO_PRIVATE_KEY": 0x3,
    "CKO_SECRET_KEY": 0x4,
    # Key types.
    "CKK_RSA": 0x0,
    "CKK_EC": 0x3,
    "CKK_GENERIC_SECRET": 0x10,
    "CKK_AES": 0x1F,
    "CKK_SHA256_HMAC": 0x2B,
    # Attributes.
    "CKA_CLASS": 0x0,
    "CKA_TOKEN": 0x1,
    "CKA_PRIVATE": 0x2,
    "CKA_LABEL": 0x3,
    "CKA_VALUE": 0x11,
    "CKA_KEY_TYPE": 0x100,
    "CKA_ID": 0x102,
    "CKA_SENSITIVE": 0x103,
    "CKA_ENCRYPT": 0x104,
    "CKA_DECRYPT": 0x105,
    "CKA_WRAP": 0x106,
    "CKA_UNWRAP": 0x107,
    "CKA_SIGN": 0x108,
    "CKA_VERIFY": 0x10A,
    "CKA_DERIVE": 0x10C,
    "CKA_MODULUS": 0x120,
    "CKA_MODULUS_BITS": 0x121,
    "CKA_PUBLIC_EXPONENT": 0x122,
    "CKA_PRIVATE_EXPONENT": 0x123,
    "CKA_PRIME_1": 0x124,
    "CKA_PRIME_2": 0x125,
    "CKA_EXPONENT_1": 0x126,
    "CKA_EXPONENT_2": 0x127,
    "CKA_COEFFICIENT": 0x128,
    "CKA_VALUE_LEN": 0x161,
    "CKA_EXTRACTABLE": 0x162,
    "CKA_LOCAL": 0x163,
    "CKA_MODIFIABLE": 0x170,
    "CKA_EC_PARAMS": 0x180,
    "CKA_EC_POINT": 0x181,
    # Mechanisms.
    "CKM_RSA_PKCS_KEY_PAIR_GEN": 0x0,
    "CKM_RSA_PKCS": 0x1,
    "CKM_RSA_PKCS_PSS": 0xD,
    "CKM_SHA256_RSA_PKCS": 0x40,
    "CKM_SHA256_RSA_PKCS_PSS": 0x43,
    "CKM_SHA256": 0x250,
    "CKM_SHA256_HMAC": 0x251,
    "CKM_GENERIC_SECRET_KEY_GEN": 0x350,
    "CKM_EC_KEY_PAIR_GEN": 0x1040,
    "CKM_ECDSA": 0x1041,
    "CKM_ECDSA_SHA256": 0x1044,
    "CKM_AES_KEY_GEN": 0x1080,
    "CKM_AES_GCM": 0x1087,
    # Mask generation functions for RSA-PSS.
    "CKG_MGF1_SHA256": 0x2,
    # Flags: slots, tokens, sessions, C_Initialize arguments, mechanisms.
    "CKF_TOKEN_PRESENT": 0x1,
    "CKF_REMOVABLE_DEVICE": 0x2,
    "CKF_HW_SLOT": 0x4,
    "CKF_RNG": 0x1,
    "CKF_WRITE_PROTECTED": 0x2,
    "CKF_LOGIN_REQUIRED": 0x4,
    "CKF_USER_PIN_INITIALIZED": 0x8,
    "CKF_PROTECTED_AUTHENTICATION_PATH": 0x100,
    "CKF_TOKEN_INITIALIZED": 0x400,
    "CKF_USER_PIN_COUNT_LOW": 0x10000,
    "CKF_USER_PIN_FINAL_TRY": 0x20000,
    "CKF_USER_PIN_LOCKED": 0x40000,
    "CKF_RW_SESSION": 0x2,
    "CKF_SERIAL_SESSION": 0x4,
    "CKF_LIBRARY_CANT_CREATE_OS_THREADS": 0x1,
    "CKF_OS_LOCKING_OK": 0x2,
    "CKF_HW": 0x1,
    "CKF_ENCRYPT": 0x100,
    "CKF_DECRYPT": 0x200,
    "CKF_SIGN": 0x800,
    "CKF_VERIFY": 0x2000,
    "CKF_GENERATE": 0x8000,
    "CKF_GENERATE_KEY_PAIR": 0x10000,
    # Users and session states.
    "CKU_SO": 0,
    "CKU_USER": 1,
    "CKU_CONTEXT_SPECIFIC": 2,
    "CKS_RO_PUBLIC_SESSION": 0,
    "CKS_RO_USER_FUNCTIONS": 1,
    "CKS_RW_PUBLIC_SESSION": 2,
    "CKS_RW_USER_FUNCTIONS": 3,
    "CKS_RW_SO_FUNCTIONS": 4,
    # Return values the binding itself looks at; the full table lives in errors.py.
    "CKR_OK": 0x0,
    "CKR_ATTRIBUTE_SENSITIVE": 0x11,
    "CKR_ATTRIBUTE_TYPE_INVALID": 0x12,
    "CKR_SIGNATURE_INVALID": 0xC0,
    "CKR_SIGNATURE_LEN_RANGE": 0xC1,
    "CKR_USER_ALREADY_LOGGED_IN": 0x100,
    "CKR_BUFFER_TOO_SMALL": 0x150,
    "CKR_CRYPTOKI_NOT_INITIALIZED": 0x190,
    "CKR_CRYPTOKI_ALREADY_INITIALIZED": 0x191,
}

# Outcomes of ek_pkcs11_load (not PKCS#11 values: the binding's own).
LOAD_RESULTS: dict[str, int] = {
    "EK_LOAD_OK": 0,
    "EK_LOAD_DLOPEN_FAILED": 1,
    "EK_LOAD_NO_FUNCTION_LIST": 2,
    "EK_LOAD_GET_FUNCTION_LIST_FAILED": 3,
}

INCLUDES = """
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
"""

# Basic types and structures (section 3 of the base specification). Unix ABI: natural alignment,
# no packing. Valid both as C and as a cffi declaration.
TYPES = """
typedef unsigned char CK_BYTE;
typedef CK_BYTE CK_CHAR;
typedef CK_BYTE CK_UTF8CHAR;
typedef CK_BYTE CK_BBOOL;
typedef unsigned long int CK_ULONG;
typedef long int CK_LONG;
typedef CK_ULONG CK_FLAGS;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_SLOT_ID;
typedef CK_ULONG CK_SESSION_HANDLE;
typedef CK_ULONG CK_OBJECT_HANDLE;
typedef CK_ULONG CK_OBJECT_CLASS;
typedef CK_ULONG CK_KEY_TYPE;
typedef CK_ULONG CK_ATTRIBUTE_TYPE;
typedef CK_ULONG CK_MECHANISM_TYPE;
typedef CK_ULONG CK_USER_TYPE;
typedef CK_ULONG CK_STATE;
typedef CK_ULONG CK_NOTIFICATION;
typedef CK_ULONG CK_RSA_PKCS_MGF_TYPE;
typedef void *CK_VOID_PTR;
typedef CK_BYTE *CK_BYTE_PTR;
typedef CK_UTF8CHAR *CK_UTF8CHAR_PTR;
typedef CK_ULONG *CK_ULONG_PTR;
typedef CK_SLOT_ID *CK_SLOT_ID_PTR;
typedef CK_SESSION_HANDLE *CK_SESSION_HANDLE_PTR;
typedef CK_OBJECT_HANDLE *CK_OBJECT_HANDLE_PTR;
typedef CK_MECHANISM_TYPE *CK_MECHANISM_TYPE_PTR;

typedef struct CK_VERSION {
    CK_BYTE major;
    CK_BYTE minor;
} CK_VERSION;

typedef struct CK_INFO {
    CK_VERSION cryptokiVersion;
    CK_UTF8CHAR manufacturerID[32];
    CK_FLAGS flags;
    CK_UTF8CHAR libraryDescription[32];
    CK_VERSION libraryVersion;
} CK_INFO;

typedef struct CK_SLOT_INFO {
    CK_UTF8CHAR slotDescription[64];
    CK_UTF8CHAR manufacturerID[32];
    CK_FLAGS flags;
    CK_VERSION hardwareVersion;
    CK_VERSION firmwareVersion;
} CK_SLOT_INFO;

typedef struct CK_TOKEN_INFO {
    CK_UTF8CHAR label[32];
    CK_UTF8CHAR manufacturerID[32];
    CK_UTF8CHAR model[16];
    CK_CHAR serialNumber[16];
    CK_FLAGS flags;
    CK_ULONG ulMaxSessionCount;
    CK_ULONG ulSessionCount;
    CK_ULONG ulMaxRwSessionCount;
    CK_ULONG ulRwSessionCount;
    CK_ULONG ulMaxPinLen;
    CK_ULONG ulMinPinLen;
    CK_ULONG ulTotalPublicMemory;
    CK_ULONG ulFreePublicMemory;
    CK_ULONG ulTotalPrivateMemory;
    CK_ULONG ulFreePrivateMemory;
    CK_VERSION hardwareVersion;
    CK_VERSION firmwareVersion;
    CK_CHAR utcTime[16];
} CK_TOKEN_INFO;

typedef struct CK_SESSION_INFO {
    CK_SLOT_ID slotID;
    CK_STATE state;
    CK_FLAGS flags;
    CK_ULONG ulDeviceError;
} CK_SESSION_INFO;

typedef struct CK_ATTRIBUTE {
    CK_ATTRIBUTE_TYPE type;
    CK_VOID_PTR pValue;
    CK_ULONG ulValueLen;
} CK_ATTRIBUTE;
typedef CK_ATTRIBUTE *CK_ATTRIBUTE_PTR;

typedef struct CK_MECHANISM {
    CK_MECHANISM_TYPE mechanism;
    CK_VOID_PTR pParameter;
    CK_ULONG ulParameterLen;
} CK_MECHANISM;
typedef CK_MECHANISM *CK_MECHANISM_PTR;

typedef struct CK_MECHANISM_INFO {
    CK_ULONG ulMinKeySize;
    CK_ULONG ulMaxKeySize;
    CK_FLAGS flags;
} CK_MECHANISM_INFO;

typedef struct CK_GCM_PARAMS {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_ULONG ulIvBits;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} CK_GCM_PARAMS;

typedef struct CK_RSA_PKCS_PSS_PARAMS {
    CK_MECHANISM_TYPE hashAlg;
    CK_RSA_PKCS_MGF_TYPE mgf;
    CK_ULONG sLen;
} CK_RSA_PKCS_PSS_PARAMS;

typedef CK_RV (*CK_NOTIFY)(CK_SESSION_HANDLE, CK_NOTIFICATION, CK_VOID_PTR);

typedef struct CK_C_INITIALIZE_ARGS {
    CK_RV (*CreateMutex)(CK_VOID_PTR *ppMutex);
    CK_RV (*DestroyMutex)(CK_VOID_PTR pMutex);
    CK_RV (*LockMutex)(CK_VOID_PTR pMutex);
    CK_RV (*UnlockMutex)(CK_VOID_PTR pMutex);
    CK_FLAGS flags;
    CK_VOID_PTR pReserved;
} CK_C_INITIALIZE_ARGS;

typedef struct CK_FUNCTION_LIST CK_FUNCTION_LIST;
typedef CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;
typedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;
"""

# The function list in the order the specification fixes (section 5.1): a module hands out a table
# of these pointers and the order is its ABI. Parameters as in sections 5.4 to 5.15.
FUNCTION_LIST: tuple[tuple[str, str], ...] = (
    ("C_Initialize", "CK_VOID_PTR pInitArgs"),
    ("C_Finalize", "CK_VOID_PTR pReserved"),
    ("C_GetInfo", "CK_INFO *pInfo"),
    ("C_GetFunctionList", "CK_FUNCTION_LIST_PTR_PTR ppFunctionList"),
    ("C_GetSlotList", "CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount"),
    ("C_GetSlotInfo", "CK_SLOT_ID slotID, CK_SLOT_INFO *pInfo"),
    ("C_GetTokenInfo", "CK_SLOT_ID slotID, CK_TOKEN_INFO *pInfo"),
    (
        "C_GetMechanismList",
        "CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount",
    ),
    (
        "C_GetMechanismInfo",
        "CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *pInfo",
    ),
    (
        "C_InitToken",
        "CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel",
    ),
    ("C_InitPIN", "CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen"),
    (
        "C_SetPIN",
        "CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, "
        "CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen",
    ),
    (
        "C_OpenSession",
        "CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, "
        "CK_SESSION_HANDLE_PTR phSession",
    ),
    ("C_CloseSession", "CK_SESSION_HANDLE hSession"),
    ("C_CloseAllSessions", "CK_SLOT_ID slotID"),
    ("C_GetSessionInfo", "CK_SESSION_HANDLE hSession, CK_SESSION_INFO *pInfo"),
    (
        "C_GetOperationState",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, "
        "CK_ULONG_PTR pulOperationStateLen",
    ),
    (
        "C_SetOperationState",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, "
        "CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey",
    ),
    (
        "C_Login",
        "CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, "
        "CK_ULONG ulPinLen",
    ),
    ("C_Logout", "CK_SESSION_HANDLE hSession"),
    (
        "C_CreateObject",
        "CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, "
        "CK_OBJECT_HANDLE_PTR phObject",
    ),
    (
        "C_CopyObject",
        "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, "
        "CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject",
    ),
    ("C_DestroyObject", "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject"),
    (
        "C_GetObjectSize",
        "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize",
    ),
    (
        "C_GetAttributeValue",
        "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, "
        "CK_ULONG ulCount",
    ),
    (
        "C_SetAttributeValue",
        "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, "
        "CK_ULONG ulCount",
    ),
    (
        "C_FindObjectsInit",
        "CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount",
    ),
    (
        "C_FindObjects",
        "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, "
        "CK_ULONG_PTR pulObjectCount",
    ),
    ("C_FindObjectsFinal", "CK_SESSION_HANDLE hSession"),
    (
        "C_EncryptInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_Encrypt",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, "
        "CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen",
    ),
    (
        "C_EncryptUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, "
        "CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen",
    ),
    (
        "C_EncryptFinal",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart, "
        "CK_ULONG_PTR pulLastEncryptedPartLen",
    ),
    (
        "C_DecryptInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_Decrypt",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, "
        "CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen",
    ),
    (
        "C_DecryptUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, "
        "CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen",
    ),
    (
        "C_DecryptFinal",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen",
    ),
    ("C_DigestInit", "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism"),
    (
        "C_Digest",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, "
        "CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen",
    ),
    ("C_DigestUpdate", "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    ("C_DigestKey", "CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey"),
    (
        "C_DigestFinal",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen",
    ),
    (
        "C_SignInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_Sign",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, "
        "CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen",
    ),
    ("C_SignUpdate", "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    (
        "C_SignFinal",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen",
    ),
    (
        "C_SignRecoverInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_SignRecover",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, "
        "CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen",
    ),
    (
        "C_VerifyInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_Verify",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, "
        "CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen",
    ),
    ("C_VerifyUpdate", "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    (
        "C_VerifyFinal",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen",
    ),
    (
        "C_VerifyRecoverInit",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey",
    ),
    (
        "C_VerifyRecover",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, "
        "CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen",
    ),
    (
        "C_DigestEncryptUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, "
        "CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen",
    ),
    (
        "C_DecryptDigestUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, "
        "CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen",
    ),
    (
        "C_SignEncryptUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, "
        "CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen",
    ),
    (
        "C_DecryptVerifyUpdate",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, "
        "CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen",
    ),
    (
        "C_GenerateKey",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, "
        "CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey",
    ),
    (
        "C_GenerateKeyPair",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, "
        "CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, "
        "CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, "
        "CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey",
    ),
    (
        "C_WrapKey",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, "
        "CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen",
    ),
    (
        "C_UnwrapKey",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, "
        "CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, "
        "CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey",
    ),
    (
        "C_DeriveKey",
        "CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, "
        "CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey",
    ),
    ("C_SeedRandom", "CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen"),
    (
        "C_GenerateRandom",
        "CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen",
    ),
    ("C_GetFunctionStatus", "CK_SESSION_HANDLE hSession"),
    ("C_CancelFunction", "CK_SESSION_HANDLE hSession"),
    ("C_WaitForSlotEvent", "CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved"),
)

FUNCTION_LIST_STRUCT = (
    "struct CK_FUNCTION_LIST {\n    CK_VERSION version;\n"
    + "".join(f"    CK_RV (*{name})({params});\n" for name, params in FUNCTION_LIST)
    + "};\n"
)

FUNCTIONS = """
int ek_pkcs11_load(const char *path, CK_FUNCTION_LIST_PTR *function_list, CK_RV *rv,
                   char *error, size_t error_len);
"""

CUSTOMIZATIONS = """
typedef CK_RV (*ek_get_function_list_t)(CK_FUNCTION_LIST_PTR_PTR);

/* dlopen `path` and ask it for its function list. The library stays loaded for the life of the
   process: many vendor modules cannot be unloaded safely. On failure `error` holds the reason. */
int ek_pkcs11_load(const char *path, CK_FUNCTION_LIST_PTR *function_list, CK_RV *rv,
                   char *error, size_t error_len)
{
    void *library;
    ek_get_function_list_t get_function_list;

    *function_list = NULL;
    *rv = CKR_OK;
    if (error_len > 0) {
        error[0] = '\\0';
    }
    dlerror();
    library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_len, "%s", reason != NULL ? reason : "dlopen failed");
        return EK_LOAD_DLOPEN_FAILED;
    }
    *(void **)(&get_function_list) = dlsym(library, "C_GetFunctionList");
    if (get_function_list == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_len, "%s", reason != NULL ? reason : "no C_GetFunctionList");
        dlclose(library);
        return EK_LOAD_NO_FUNCTION_LIST;
    }
    *rv = get_function_list(function_list);
    if (*rv != CKR_OK || *function_list == NULL) {
        snprintf(error, error_len, "C_GetFunctionList returned 0x%lx", (unsigned long)*rv);
        dlclose(library);
        return EK_LOAD_GET_FUNCTION_LIST_FAILED;
    }
    return EK_LOAD_OK;
}
"""


def _defines() -> str:
    lines = [f"#define {name} ({value:#x}UL)" for name, value in CONSTANTS.items()]
    lines += [f"#define {name} {value}" for name, value in LOAD_RESULTS.items()]
    lines.append(f"#define EK_PKCS11_BINDING_VERSION {BINDING_VERSION}")
    return "\n".join(lines) + "\n"


def _constant_declarations() -> str:
    lines = [f"static const CK_ULONG {name};" for name in CONSTANTS]
    lines += [f"static const int {name};" for name in LOAD_RESULTS]
    lines.append("static const int EK_PKCS11_BINDING_VERSION;")
    return "\n".join(lines) + "\n"


C_SOURCE = INCLUDES + TYPES + FUNCTION_LIST_STRUCT + _defines() + CUSTOMIZATIONS

ffibuilder = cffi.FFI()
ffibuilder.set_source("firmware._ffi._pkcs11", C_SOURCE, libraries=["dl"])
ffibuilder.cdef(TYPES + FUNCTION_LIST_STRUCT + _constant_declarations() + FUNCTIONS)


def main() -> None:
    """Build by hand (see ffi/extension.py)."""
    from extension import compile_into_package

    print(compile_into_package(ffibuilder, "pkcs11"))


if __name__ == "__main__":
    main()
