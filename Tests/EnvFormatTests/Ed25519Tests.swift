// Ed25519 through libcrypto: RFC 8032's test vectors, PEM in both directions, and signatures
// checked against the openssl CLI (an implementation this code does not share a line with).
import Foundation
import SysKit
import XCTest

final class Ed25519Tests: XCTestCase {
    /// RFC 8032 section 7.1, tests 1-3: seed, public key, message, signature.
    static let vectors: [(String, String, String, String)] = [
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
        ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
         "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
         "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ]

    func testRFC8032VectorsThroughPEM() throws {
        for (seed, pub, msg, sig) in Self.vectors {
            let key = try Ed25519PrivateKey(pem: pkcs8PEM(seed: Hex.decode(seed)!))
            XCTAssertEqual(Hex.encode(key.publicKey.raw), pub)
            XCTAssertEqual(Hex.encode(try key.sign(Hex.decode(msg)!)), sig)
            let pk = try Ed25519PublicKey(pem: spkiPEM(Hex.decode(pub)!))
            XCTAssertTrue(pk.verify(Hex.decode(sig)!, of: Hex.decode(msg)!))
            XCTAssertEqual(pk.keyID, String(Hex.encode(SHA256.hash(Hex.decode(pub)!)).prefix(16)))
        }
    }

    func testSignVerifyAndEveryKindOfMismatch() throws {
        let k = try Ed25519PrivateKey.generate(), other = try Ed25519PrivateKey.generate()
        XCTAssertNotEqual(k.publicKey, other.publicKey)
        let msg = Array("envmount-signed-ref 1\nenv ml\n".utf8)
        let sig = try k.sign(msg)
        XCTAssertEqual(sig.count, 64)
        XCTAssertTrue(k.publicKey.verify(sig, of: msg))
        XCTAssertFalse(other.publicKey.verify(sig, of: msg), "another key")
        XCTAssertFalse(k.publicKey.verify(sig, of: msg + [0x0a]), "a longer message")
        XCTAssertFalse(k.publicKey.verify(sig, of: Array(msg.dropLast())), "a shorter message")
        for i in [0, 31, 32, 63] {
            var bad = sig
            bad[i] ^= 0x01
            XCTAssertFalse(k.publicKey.verify(bad, of: msg), "signature byte \(i) flipped")
        }
        XCTAssertFalse(k.publicKey.verify(Array(sig.dropLast()), of: msg))
        XCTAssertFalse(k.publicKey.verify([], of: msg))
    }

    func testPEMRoundTripsAndRefusals() throws {
        let k = try Ed25519PrivateKey.generate()
        let priv = try k.pem(), pub = try k.publicKey.pem()
        XCTAssertTrue(String(decoding: priv, as: UTF8.self).hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        XCTAssertTrue(String(decoding: pub, as: UTF8.self).hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        XCTAssertEqual(try Ed25519PrivateKey(pem: priv).publicKey, k.publicKey)
        XCTAssertEqual(try Ed25519PublicKey(pem: pub), k.publicKey)
        // A public key is not a private key and the other way round; junk is neither.
        XCTAssertThrowsError(try Ed25519PrivateKey(pem: pub))
        XCTAssertThrowsError(try Ed25519PublicKey(pem: priv))
        for junk in [[], Array("hello".utf8), Array(priv.prefix(40)), [UInt8](repeating: 0x41, count: 5000)] {
            XCTAssertThrowsError(try Ed25519PrivateKey(pem: junk))
            XCTAssertThrowsError(try Ed25519PublicKey(pem: junk))
        }
    }

    /// Keys from `openssl genpkey`, signatures cross-checked with `openssl pkeyutl`; an encrypted
    /// key and an EC key are refused with a reason, never a passphrase prompt.
    func testInteroperatesWithTheOpenSSLCLI() throws {
        let dir = NSTemporaryDirectory() + "envmount-ed25519-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FS.makeDirectories(dir)
        defer { try? FS.removeTree(dir) }
        try openssl(["genpkey", "-algorithm", "ed25519", "-out", "\(dir)/k"])
        try openssl(["pkey", "-in", "\(dir)/k", "-pubout", "-out", "\(dir)/k.pub"])
        let key = try Ed25519PrivateKey(pem: try FS.readFile("\(dir)/k"))
        XCTAssertEqual(try Ed25519PublicKey(pem: try FS.readFile("\(dir)/k.pub")), key.publicKey)
        XCTAssertEqual(try key.publicKey.pem(), try FS.readFile("\(dir)/k.pub"))

        let msg = Array("envmount-signed-ref 1\nenv cli\nrevision 7\n".utf8)
        try FS.writeFileAtomically("\(dir)/msg", msg)
        // ours → openssl
        try FS.writeFileAtomically("\(dir)/sig", try key.sign(msg))
        try openssl(["pkeyutl", "-verify", "-pubin", "-inkey", "\(dir)/k.pub", "-rawin", "-in", "\(dir)/msg", "-sigfile", "\(dir)/sig"])
        // openssl → ours
        try openssl(["pkeyutl", "-sign", "-inkey", "\(dir)/k", "-rawin", "-in", "\(dir)/msg", "-out", "\(dir)/sig2"])
        XCTAssertTrue(key.publicKey.verify(try FS.readFile("\(dir)/sig2"), of: msg))
        XCTAssertFalse(key.publicKey.verify(try FS.readFile("\(dir)/sig2"), of: msg + [0]))

        try openssl(["genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret", "-out", "\(dir)/enc"])
        XCTAssertThrowsError(try Ed25519PrivateKey(pem: try FS.readFile("\(dir)/enc"))) {
            XCTAssertTrue("\($0)".contains("unencrypted"), "\($0)")
        }
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "\(dir)/ec"])
        try openssl(["pkey", "-in", "\(dir)/ec", "-pubout", "-out", "\(dir)/ec.pub"])
        XCTAssertThrowsError(try Ed25519PrivateKey(pem: try FS.readFile("\(dir)/ec"))) { XCTAssertTrue("\($0)".contains("not Ed25519"), "\($0)") }
        XCTAssertThrowsError(try Ed25519PublicKey(pem: try FS.readFile("\(dir)/ec.pub"))) { XCTAssertTrue("\($0)".contains("not Ed25519"), "\($0)") }
    }
}

/// A PEM PKCS#8 Ed25519 private key around a raw seed (RFC 8410's fixed DER prefix).
func pkcs8PEM(seed: [UInt8]) -> [UInt8] {
    pem("PRIVATE KEY", Hex.decode("302e020100300506032b657004220420")! + seed)
}

/// A PEM SubjectPublicKeyInfo Ed25519 public key around raw bytes.
func spkiPEM(_ raw: [UInt8]) -> [UInt8] {
    pem("PUBLIC KEY", Hex.decode("302a300506032b6570032100")! + raw)
}

func pem(_ label: String, _ der: [UInt8]) -> [UInt8] {
    Array("-----BEGIN \(label)-----\n\(Data(der).base64EncodedString(options: .lineLength64Characters))\n-----END \(label)-----\n".utf8)
}

/// Runs the openssl CLI and fails on a non-zero exit.
func openssl(_ args: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    p.standardInput = FileHandle.nullDevice
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if p.terminationStatus != 0 {
        throw Ed25519Error("openssl \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
    }
}
