import CarbonStore
import CarbonStoreCLI
import CarbonStoreTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Hooks for the reliability tests, read from CARBONSTORE_TEST_* variables by the test host only
/// (the shipped `carbonstore` reads none of them). They let a test stop, kill or fail a real
/// process at the worst moment.
///
/// - `CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS=N`: hold the lock for N ms right before the
///   conditional write, so tests can stop or kill a writer there.
/// - `CARBONSTORE_TEST_FILE_FAULT=SPEC`: inject one fault into the file writes of the `path:`
///   backend: `crash:STEP[@N]` exits the process with status 86 at that step of a write (as a power
///   cut of the process, no cleanup); `fail:CALL:ERRNO[@N]` makes that system call fail. See
///   `FileFault` and docs/RELIABILITY.md.
/// - `CARBONSTORE_TEST_COMPACTION=always|FRACTION:BYTES`: when an update writes a new snapshot
///   rather than appending a change frame (`StoreOptions.compaction`): `always` compacts on every
///   update, `0.05:256` as soon as the tail passes 5% of the snapshot and 256 bytes.
enum TestHooks {
    static func variable(_ name: String) -> String? {
        guard let v = getenv(name), v.pointee != 0 else { return nil }
        return String(cString: v)
    }

    /// Parses `CARBONSTORE_TEST_COMPACTION`.
    static func compaction(_ text: String) throws -> CompactionPolicy {
        if text == "always" { return CompactionPolicy(tailFraction: 0, minimumTailBytes: 0) }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let fraction = Double(parts[0]), fraction >= 0, let bytes = Int(parts[1]),
            bytes >= 0
        else {
            throw InvalidRequestError(
                "CARBONSTORE_TEST_COMPACTION '\(text)': write 'always' or FRACTION:BYTES, e.g. 0.05:256")
        }
        return CompactionPolicy(tailFraction: fraction, minimumTailBytes: bytes)
    }

    static func install() throws {
        let pause = variable("CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS").flatMap(Int64.init)
        let fault = try variable("CARBONSTORE_TEST_FILE_FAULT").map { try FileFault(parsing: $0) }
        let compaction = try variable("CARBONSTORE_TEST_COMPACTION").map(compaction)
        guard pause != nil || fault != nil || compaction != nil else { return }
        // One injector for the process, so that `@N` counts across every store it makes.
        let io = fault.map { FileIO.injecting($0, into: .posix, crashMode: .exitProcess) }
        StoreHooks.install { options in
            if let pause {
                options.beforeCommit = {
                    FileHandleStderr.write("carbonstore: pausing \(pause) ms before commit\n")
                    try? await Task.sleep(for: .milliseconds(pause))
                }
            }
            if let io { options.fileIO = io }
            if let compaction { options.compaction = compaction }
        }
    }
}
