/*
 * p11shim — a PKCS#11 v2.40 module for tests that forwards every call to a
 * real module (SoftHSM2 by default) and injects faults on command.
 *
 * Loading
 *   dlopen() the shim (libfirmante-p11shim.so) like any PKCS#11 module and
 *   call C_GetFunctionList. C_Initialize dlopens the real module named by
 *   the environment variable P11SHIM_MODULE (default
 *   /usr/lib/softhsm/libsofthsm2.so) and forwards to it. The real module is
 *   never unloaded (so leak reports inside it stay attributable).
 *
 * Environment (read at C_Initialize)
 *   P11SHIM_MODULE   path of the real PKCS#11 module.
 *   P11SHIM_CONTROL  path of the control file (optional; no faults without it).
 *   P11SHIM_LOG      path of the call log (optional). One line per call,
 *                    "<function> <rv>", e.g. "C_Sign CKR_OK"; the rv is the
 *                    CKR_* name when known, else 0x%08lx. Written with one
 *                    write(2) per line on an O_APPEND descriptor. Never holds
 *                    PINs, data, handles or labels.
 *
 * Control file
 *   Lines "key=value"; blank lines and lines starting with '#' are ignored;
 *   unknown keys are ignored; a missing file means "no faults". The shim
 *   stat()s the file at every call and re-reads it when its device, inode,
 *   size, mtime or ctime changed. Write it atomically (write a temporary
 *   file, then rename(2) over it) so that every change is seen.
 *   Every re-read re-arms session_invalid and restarts the reset_after count.
 *
 *   removed=0|1         1: the token is removed. Every real slot is affected.
 *                       C_GetSlotList(CK_TRUE) lists no slot,
 *                       C_GetSlotList(CK_FALSE) lists them all and
 *                       C_GetSlotInfo clears CKF_TOKEN_PRESENT;
 *                       C_GetTokenInfo, C_OpenSession, C_InitToken,
 *                       C_GetMechanismList, C_GetMechanismInfo return
 *                       CKR_TOKEN_NOT_PRESENT. When the shim sees 0 -> 1 it
 *                       closes every real session (which drops the login);
 *                       calls on those sessions return CKR_DEVICE_REMOVED
 *                       while removed=1 and CKR_SESSION_HANDLE_INVALID after
 *                       re-insertion (removed=0). Session handles are the
 *                       shim's own and are never reused.
 *   slot_offset=N       the slot ids the shim exposes are the real ids + N
 *                       (default 0). Change it while removed=1 to simulate a
 *                       re-insertion under a new slot id. Slot ids below N
 *                       return CKR_SLOT_ID_INVALID.
 *   session_invalid=N   the next N calls that name a live session return
 *                       CKR_SESSION_HANDLE_INVALID; the shim closes that real
 *                       session, so it is really gone.
 *   already_logged_in=1 C_Login performs the real login and, if that succeeds,
 *                       returns CKR_USER_ALREADY_LOGGED_IN (session usable).
 *   pin_flags=F|F...    F in count_low, final_try, locked (also "," as
 *                       separator; "none" or empty for nothing): OR'ed into
 *                       CK_TOKEN_INFO.flags as CKF_USER_PIN_COUNT_LOW,
 *                       CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED. "locked"
 *                       also makes C_Login (CKU_USER, CKU_CONTEXT_SPECIFIC)
 *                       return CKR_PIN_LOCKED without calling the real module.
 *   sign_delay_ms=N     sleep N ms (capped at 600000) before each C_Sign and
 *                       C_SignFinal.
 *   reset_after=N       after every N successful C_Sign calls that produced a
 *                       signature (pSignature != NULL) the card "resets": the
 *                       shim closes every real session (dropping the login)
 *                       and all existing session handles return
 *                       CKR_SESSION_HANDLE_INVALID. The Nth C_Sign itself
 *                       returns its signature.
 *   hang=NAME[,NAME...] calls of these functions (e.g. C_Sign) block, before
 *                       anything else happens, until the control file no
 *                       longer names them (polled every 50 ms).
 *   mechanisms=all|rsa_pkcs_only
 *                       rsa_pkcs_only hides the hash-and-sign RSA mechanisms
 *                       (CKM_{MD5,SHA1,SHA224,SHA256,SHA384,SHA512}_RSA_PKCS and
 *                       their _PSS forms) from C_GetMechanismList and
 *                       C_GetMechanismInfo (CKR_MECHANISM_INVALID), and
 *                       C_SignInit/C_VerifyInit with them return
 *                       CKR_MECHANISM_INVALID; callers must use CKM_RSA_PKCS
 *                       with a DigestInfo.
 *
 * The shim notices a change at its next call (any function).
 * Thread-safe: one mutex guards the control state and the session table; it
 * is never held across a forwarded call, a delay or a hang.
 * C_OpenSession does not forward the Notify callback (SoftHSM2 never calls it).
 */
#ifndef FIRMANTE_P11SHIM_H
#define FIRMANTE_P11SHIM_H

/* Default real module. */
#define P11SHIM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* Environment variable names. */
#define P11SHIM_ENV_MODULE  "P11SHIM_MODULE"
#define P11SHIM_ENV_CONTROL "P11SHIM_CONTROL"
#define P11SHIM_ENV_LOG     "P11SHIM_LOG"

#endif
