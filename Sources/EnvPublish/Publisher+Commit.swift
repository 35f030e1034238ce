// Stage 4 of a publish: make the new tree visible. Everything it names is durable first
// (`sync`), then the manifest, then the ref, written last.
import SysKit
import EnvFormat
import EnvStore

extension Publisher {
    /// The bytes of `refs/<env>` for `ref`: `options.encodeRef` (a signer) or the plain encoding.
    func encodeRef(_ ref: Ref) throws -> [UInt8] {
        try options.encodeRef?(ref) ?? ref.encode()
    }

    func commit(manifest encoded: [UInt8], previous: Ref?, result: inout PublishResult) throws {
        let manifestID = result.ref.manifest
        do {
            try store.sync()
            if !(try store.exists(Ref.manifestKey(manifestID))) { try store.put(Ref.manifestKey(manifestID), encoded) }
            if let p = previous, p.manifest == manifestID {
                result.ref = p
                result.unchanged = true
            } else {
                result.ref.revision = (previous?.revision ?? 0) + 1
                try store.put(Ref.objectKey(env: options.env), try encodeRef(result.ref))
            }
        } catch {
            throw PublishError.store("\(error)")
        }
    }
}
