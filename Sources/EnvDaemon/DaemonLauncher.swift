// Starting the daemon. `envmount mount` re-executes itself (`envmount daemon`, hidden) in a new
// session, writes the whole mount description to the child's stdin as JSON and waits for the
// line READY on the child's stdout, which the child writes only once statfs on the mount point
// shows the FUSE magic. The wait has a deadline that is enforced with poll(2): a daemon that
// neither answers nor fails in time is killed, by its PID, and the user is told.
import Glibc
import SysKit

enum DaemonLauncher {
    struct Failed: Error, CustomStringConvertible {
        let description: String
        /// The daemon was stopped at the deadline (rather than failing on its own).
        var timedOut = false
    }

    /// Starts `executable` with `arguments`, `input` on its stdin, and waits up to `deadline`
    /// seconds for READY on its stdout. Returns its PID. On failure the error is what the child
    /// wrote to stderr (the "envmount: " prefix dropped), or why it was stopped.
    static func launch(executable: String, arguments: [String], input: [UInt8], deadline: Double) throws -> Int32 {
        // A child that exits without reading its input must not kill this process with SIGPIPE.
        ProcessControl.ignoreSIGPIPE()
        let p = try Subprocess.start([executable] + arguments, stdin: .pipe, stdout: .pipe, stderr: .pipe)
        let pid = p.pid
        let inFD = p.input!, outFD = p.output!, errFD = p.errorOutput!
        defer { outFD.close(); errFD.close() }
        // The description is small (a few KiB), far below a pipe's 64 KiB, so this cannot block.
        try? inFD.writeAll(input)
        inFD.close()
        var seenOut: [UInt8] = [], seenErr: [UInt8] = []
        var outOpen = true, errOpen = true
        let end = ProcessControl.monotonicNs() + UInt64(deadline * 1e9)
        while outOpen || errOpen {
            let now = ProcessControl.monotonicNs()
            if now >= end {
                let how = Subprocess.stop(p.pid)   // libfuse unmounts on SIGTERM
                throw Failed(description: "the mount daemon (pid \(pid)) did not answer within \(Int(deadline)) s; \(how)", timedOut: true)
            }
            let wait = Int32(min((end - now) / 1_000_000 + 1, 1000))
            let ready = try FileDescriptor.waitReadable([outFD, errFD], milliseconds: wait)
            if outOpen && ready[0] {
                let b = (try? outFD.readSome()) ?? []
                if b.isEmpty { outOpen = false } else { seenOut += b }
                if String(decoding: seenOut, as: UTF8.self).contains("READY\n") { return pid }
            }
            if errOpen && ready[1] {
                let b = (try? errFD.readSome()) ?? []
                if b.isEmpty { errOpen = false } else if seenErr.count < 1 << 16 { seenErr += b }
            }
            // Both closed: the child exited (or closed them) without READY.
            if !outOpen && !errOpen { break }
        }
        // Both pipes close as the child exits, a moment before it can be reaped: give it that
        // moment (a child that closed them and runs on is stopped).
        var ended = p.endedStatus()
        let grace = ProcessControl.monotonicNs() + 500_000_000
        while ended == nil && ProcessControl.monotonicNs() < grace {
            usleep(5_000)
            ended = p.endedStatus()
        }
        if ended == nil { _ = Subprocess.stop(p.pid) }
        // The status as Foundation's Process gave it: the exit status, or the signal's number.
        let status = ended.map { s in " (status \((s & 0x7f) == 0 ? (s >> 8) & 0xff : s & 0x7f))" } ?? ""
        let msg = String(decoding: seenErr, as: UTF8.self).trimmingWhitespace()
            .replacing("envmount: ", with: "")
        throw Failed(description: msg.isEmpty ? "the mount daemon (pid \(pid)) exited before the mount answered\(status)" : msg)
    }
}
