import EnvCache
import EnvFormat
import EnvStore
import SysKit

extension EnvironmentResolver {
    /// A recorded revision, mounted on purpose (`--revision N`): its ref is the exact ref bytes
    /// kept in `revisions/<env>/<n>`, so it is checked as it was published. The cached current
    /// ref is left alone.
    public func resolve(env: String?, revision n: UInt64) throws -> OpenedEnvironment {
        let name = try env ?? onlyEnvironment()
        let key = RevisionRecord.objectKey(env: name, revision: n)
        let record: RevisionRecord
        do {
            record = try RevisionRecord.decode(try store.get(key))
        } catch let e as StoreError where e.isNotFound {
            let have = ((try? store.list(prefix: RevisionRecord.prefix(env: name))) ?? [])
                .compactMap(RevisionRecord.revision(fromKey:)).sorted()
            throw MountError("\(name) has no revision \(n) in \(store.description)"
                + (have.isEmpty ? "" : " (recorded: \(have.map(String.init).joined(separator: ", ")))"))
        } catch let e as FormatError {
            throw MountError("\(store.description): \(key) is damaged: \(e)")
        }
        let ref: Ref
        do { ref = try Ref.decode(record.refBytes) } catch {
            throw MountError("\(store.description): the ref kept in \(key) is invalid: \(error)")
        }
        guard ref.revision == n, ref.manifest.hex == record.manifest else {
            throw MountError("\(store.description): \(key) holds a ref for revision \(ref.revision), manifest \(ref.manifest.hex.prefix(16)); the record is inconsistent")
        }
        // Checked like any ref (signature, trusted key); the rollback check lets an older
        // revision through only because --revision sets allowOlder (MountDaemon).
        let signer = try trust.admit(ref, env: name, store: store.description, source: "\(key) in \(store.description)")
        return OpenedEnvironment(env: name, ref: ref, manifest: try loadManifest(ref.manifest), offline: false, signedBy: signer)
    }
}
