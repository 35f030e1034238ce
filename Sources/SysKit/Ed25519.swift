// Ed25519 signatures through OpenSSL's libcrypto, the library that already gives SHA-256: no new
// dependency, and keys are the PEM files the openssl CLI reads and writes
// (`openssl genpkey -algorithm ed25519`, `openssl pkey -pubout`). Keys live in Swift as their
// raw 32 bytes; an EVP_PKEY exists only for the length of one call.
import CCrypto

public struct Ed25519Error: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// An Ed25519 public key (its 32 raw bytes).
public struct Ed25519PublicKey: Sendable, Hashable {
    public let raw: [UInt8]

    public init(raw: [UInt8]) throws {
        guard raw.count == 32 else { throw Ed25519Error("an Ed25519 public key is 32 bytes, not \(raw.count)") }
        self.raw = raw
    }

    /// A PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"), as `openssl pkey -pubout` writes it.
    public init(pem: [UInt8]) throws {
        let raw = try OpenSSLKey.withPEM(pem, privateKey: false) { key in try OpenSSLKey.rawBytes(key, privateKey: false) }
        try self.init(raw: raw)
    }

    /// The key as PEM SubjectPublicKeyInfo.
    public func pem() throws -> [UInt8] {
        try OpenSSLKey.withRaw(raw, privateKey: false) { try OpenSSLKey.writePEM($0, privateKey: false) }
    }

    /// A short name for the key: the first 16 hex digits of the SHA-256 of its raw bytes.
    public var keyID: String { String(Hex.encode(SHA256.hash(raw)).prefix(16)) }

    /// Whether `signature` is this key's signature of `message`.
    public func verify(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        return (try? OpenSSLKey.withRaw(raw, privateKey: false) { key -> Bool in
            guard let ctx = EVP_MD_CTX_new() else { throw OpenSSLKey.failure("EVP_MD_CTX_new") }
            defer { EVP_MD_CTX_free(ctx) }
            guard EVP_DigestVerifyInit(ctx, nil, nil, nil, key) == 1 else { throw OpenSSLKey.failure("EVP_DigestVerifyInit") }
            // SAFETY: both buffers are live Swift arrays for the duration of the call, with their counts.
            let ok = signature.withUnsafeBufferPointer { s in
                OpenSSLKey.withBytes(message) { m, n in EVP_DigestVerify(ctx, s.baseAddress, s.count, m, n) }
            }
            ERR_clear_error()
            return ok == 1
        }) ?? false
    }
}

/// An Ed25519 private key (its 32-byte seed) and its public key.
public struct Ed25519PrivateKey: Sendable {
    let seed: [UInt8]
    public let publicKey: Ed25519PublicKey

    init(seed: [UInt8]) throws {
        guard seed.count == 32 else { throw Ed25519Error("an Ed25519 private key is 32 bytes, not \(seed.count)") }
        self.seed = seed
        publicKey = try Ed25519PublicKey(raw: try OpenSSLKey.withRaw(seed, privateKey: true) {
            try OpenSSLKey.rawBytes($0, privateKey: false)
        })
    }

    /// A new key from OpenSSL's generator (`EVP_PKEY_keygen`).
    public static func generate() throws -> Ed25519PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw OpenSSLKey.failure("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else {
            throw OpenSSLKey.failure("EVP_PKEY_keygen")
        }
        defer { EVP_PKEY_free(key) }
        return try Ed25519PrivateKey(seed: try OpenSSLKey.rawBytes(key, privateKey: true))
    }

    /// An unencrypted PEM private key ("BEGIN PRIVATE KEY", PKCS#8), as
    /// `openssl genpkey -algorithm ed25519` writes it.
    public init(pem: [UInt8]) throws {
        try self.init(seed: try OpenSSLKey.withPEM(pem, privateKey: true) { try OpenSSLKey.rawBytes($0, privateKey: true) })
    }

    /// The key as PEM PKCS#8, unencrypted.
    public func pem() throws -> [UInt8] {
        try OpenSSLKey.withRaw(seed, privateKey: true) { try OpenSSLKey.writePEM($0, privateKey: true) }
    }

    /// The 64-byte signature of `message` (pure Ed25519: no digest first).
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        try OpenSSLKey.withRaw(seed, privateKey: true) { key in
            guard let ctx = EVP_MD_CTX_new() else { throw OpenSSLKey.failure("EVP_MD_CTX_new") }
            defer { EVP_MD_CTX_free(ctx) }
            guard EVP_DigestSignInit(ctx, nil, nil, nil, key) == 1 else { throw OpenSSLKey.failure("EVP_DigestSignInit") }
            var sig = [UInt8](repeating: 0, count: 64)
            var len = sig.count
            // SAFETY: the output is a local 64-byte array whose size is passed in `len`; the message
            // buffer is live for the call.
            let ok = sig.withUnsafeMutableBufferPointer { s in
                OpenSSLKey.withBytes(message) { m, n in EVP_DigestSign(ctx, s.baseAddress, &len, m, n) }
            }
            guard ok == 1, len == 64 else { throw OpenSSLKey.failure("EVP_DigestSign") }
            return sig
        }
    }
}

/// The EVP_PKEY plumbing shared by both key types.
enum OpenSSLKey {
    /// The error OpenSSL queued for the failed call, and the queue emptied.
    static func failure(_ call: String) -> Ed25519Error {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return Ed25519Error("\(call) failed") }
        var buf = [CChar](repeating: 0, count: 256)
        // SAFETY: the buffer is a local array and its size is passed; OpenSSL NUL-terminates it.
        buf.withUnsafeMutableBufferPointer { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        return Ed25519Error("\(call) failed: \(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
    }

    /// Runs `body` with a pointer to the bytes and their count; an empty array gets a valid pointer.
    static func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
        if bytes.isEmpty {
            var zero: UInt8 = 0
            // SAFETY: a live local byte with count 0: never read.
            return withUnsafePointer(to: &zero) { body($0, 0) }
        }
        // SAFETY: a non-empty array has a base address, valid for its count during the call.
        return bytes.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }

    /// An EVP_PKEY made from raw key bytes, freed when `body` returns.
    static func withRaw<R>(_ raw: [UInt8], privateKey: Bool, _ body: (OpaquePointer) throws -> R) throws -> R {
        // SAFETY: the raw bytes are copied by OpenSSL during the call.
        let key = withBytes(raw) { p, n in
            privateKey ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, p, n)
                       : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, p, n)
        }
        guard let key else { throw failure(privateKey ? "EVP_PKEY_new_raw_private_key" : "EVP_PKEY_new_raw_public_key") }
        defer { EVP_PKEY_free(key) }
        return try body(key)
    }

    /// An EVP_PKEY parsed from PEM, freed when `body` returns. Only Ed25519 keys are accepted, and
    /// an encrypted private key is refused (never a passphrase prompt on the terminal).
    static func withPEM<R>(_ pem: [UInt8], privateKey: Bool, _ body: (OpaquePointer) throws -> R) throws -> R {
        let what = privateKey ? "private key" : "public key"
        guard !pem.isEmpty, pem.count < 1 << 20 else { throw Ed25519Error("not a PEM \(what)") }
        // SAFETY: the memory BIO reads the array in place and is freed before the array goes away.
        let key: OpaquePointer? = pem.withUnsafeBytes { b in
            guard let bio = BIO_new_mem_buf(b.baseAddress, Int32(b.count)) else { return nil }
            defer { BIO_free(bio) }
            return privateKey ? PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
                              : PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        ERR_clear_error()
        guard let key else {
            throw Ed25519Error(privateKey ? "not an unencrypted PEM private key" : "not a PEM public key")
        }
        defer { EVP_PKEY_free(key) }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else { throw Ed25519Error("a PEM \(what), but not Ed25519") }
        return try body(key)
    }

    static func rawBytes(_ key: OpaquePointer, privateKey: Bool) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len = out.count
        // SAFETY: the output is a local 32-byte array whose size is passed in `len`.
        let ok = out.withUnsafeMutableBufferPointer { o in
            privateKey ? EVP_PKEY_get_raw_private_key(key, o.baseAddress, &len)
                       : EVP_PKEY_get_raw_public_key(key, o.baseAddress, &len)
        }
        guard ok == 1, len == 32 else { throw failure("EVP_PKEY_get_raw_\(privateKey ? "private" : "public")_key") }
        return out
    }

    static func writePEM(_ key: OpaquePointer, privateKey: Bool) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw failure("BIO_new") }
        defer { BIO_free(bio) }
        let ok = privateKey ? PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) : PEM_write_bio_PUBKEY(bio, key)
        guard ok == 1 else { throw failure(privateKey ? "PEM_write_bio_PrivateKey" : "PEM_write_bio_PUBKEY") }
        let n = Int(BIO_ctrl_pending(bio))
        var out = [UInt8](repeating: 0, count: n)
        // SAFETY: the output is a local array of exactly the pending byte count.
        let got = out.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(n)) }
        guard got == Int32(n) else { throw failure("BIO_read") }
        return out
    }
}
