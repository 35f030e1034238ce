import SysKit
import EnvFormat
import EnvStore

/// `envpublish rollback`: makes an older revision current again by committing its manifest as a
/// new revision (history is never rewritten; the new record says which one it restores).
public enum Rollback {
    public static func run(store: any ObjectStore, env: String, to n: UInt64,
                           encodeRef: (@Sendable (Ref) throws -> [UInt8])? = nil) throws -> RevisionRecord {
        guard Ref.isValidEnvName(env) else { throw PublishError.invalidEnvName(env) }
        guard store.isWritable else { throw PublishError.store(StoreError.readOnly(store: store.description).description) }
        let log = RevisionLog(store: store, env: env)
        let target = try log.record(n)
        guard let manifest = target.manifestID, try store.exists(Ref.manifestKey(manifest)) else {
            throw PublishError.store("revision \(n) of \(env): its manifest \(target.manifest) is no longer in \(store.description) (removed by gc?)")
        }
        let current: Ref?
        do { current = try Ref.decode(try store.get(Ref.objectKey(env: env))) } catch let e as StoreError where e.isNotFound {
            current = nil
        }
        if let c = current, c.manifest == manifest {
            throw PublishError.store("revision \(n) of \(env) is already what is current (revision \(c.revision)); nothing to roll back")
        }
        var template = target
        template.publishedAt = ProcessControl.wallClockSeconds()
        template.host = PublisherIdentity.host
        template.user = PublisherIdentity.user
        template.uploadedBytes = 0
        template.rollbackOf = n
        return try log.commit(template, after: current) { try encodeRef?($0) ?? $0.encode() }
    }
}
