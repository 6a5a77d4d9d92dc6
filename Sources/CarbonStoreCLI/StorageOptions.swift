import ArgumentParser
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The options every command that touches storage shares.
package struct StorageOptions: ParsableArguments {
    package init() {}

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Storage URI (default: $CARBONSTORE_STORAGE, else the deprecated $COGO_STORAGE, else path:carbonstore-data).",
            valueName: "uri"))
    package var storage: String?

    /// The storage URI: `--storage`, else `CARBONSTORE_STORAGE`, else the old name `COGO_STORAGE`
    /// (with a deprecation notice, see `makeStore`), else the default. An empty variable is unset.
    package var uriText: String { Self.resolve(option: storage, environment: environmentVariable).uri }

    /// Where the URI comes from, in order of precedence.
    enum Source: Equatable {
        case option, variable, deprecatedVariable, defaultURI
    }

    static func resolve(option: String?, environment: (String) -> String?) -> (uri: String, source: Source) {
        if let option { return (option, .option) }
        if let uri = environment("CARBONSTORE_STORAGE") { return (uri, .variable) }
        if let uri = environment("COGO_STORAGE") { return (uri, .deprecatedVariable) }
        return (StorageURI.defaultURI, .defaultURI)
    }

    package func makeStore(configure: (inout StoreOptions) -> Void = { _ in }) async throws -> Store {
        if Self.resolve(option: storage, environment: environmentVariable).source == .deprecatedVariable {
            DeprecationNotice.printOnce(
                "COGO_STORAGE is deprecated and will be ignored in a future release; rename it to CARBONSTORE_STORAGE"
            )
        }
        var options = StoreOptions()
        try StoreHooks.configure(&options)
        configure(&options)
        return try await AWSBackends().storeFactory(options: options).makeStore(uriText)
    }
}

/// Runs a command body and turns every failure into one line on stderr and an exit code.
package func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as CarbonStoreError {
        printError(error.description)
        throw ExitCode(exitCode(for: error.kind))
    } catch let error as CleanExit {
        throw error
    } catch {
        printError(String(describing: error))
        throw ExitCode(1)
    }
}

/// A set, non-empty environment variable.
func environmentVariable(_ name: String) -> String? {
    guard let v = getenv(name), v.pointee != 0 else { return nil }
    return String(cString: v)
}

/// Prints a deprecation notice on stderr, once per process.
enum DeprecationNotice {
    private static let printed = Mutex(false)

    static func printOnce(_ message: String) {
        let first = printed.withLock { done in
            defer { done = true }
            return !done
        }
        if first { FileHandleStderr.write("carbonstore: warning: " + message + "\n") }
    }
}

func exitCode(for kind: ErrorKind) -> Int32 {
    switch kind {
    case .invalidInput: return 64
    case .notFound: return 3
    case .conflict: return 4
    case .corrupt: return 5
    case .lockTimeout, .leaseExpired, .unavailable: return 6
    case .storageFailure: return 1
    case .permissionDenied: return 77
    }
}

/// Prints one line on stderr. Control characters in the message (a newline, a terminal escape in a
/// user id quoted by an error) are shown escaped, see `DisplayText`; backslashes are kept as they
/// are, since ids the tool quotes itself are escaped already by `shown`.
package func printError(_ message: String) {
    let line = "carbonstore: " + DisplayText.escaped(message, escapingBackslash: false) + "\n"
    FileHandleStderr.write(line)
}

/// An id, key or other user-supplied text as human-readable output shows it: control characters,
/// line separators and bidirectional formatting characters as `\u{HEX}`, a backslash as `\\`
/// (see `DisplayText.escaped`). JSON output is exact and does not use this.
func shown(_ text: String) -> String { DisplayText.escaped(text) }

/// Reads `--at`: an ISO 8601 time, or now.
func parseTime(_ text: String?, option: String = "--at") throws -> Timestamp {
    guard let text else { return Timestamp.now() }
    guard let t = Timestamp(iso8601: text) else {
        throw InvalidRequestError(
            "\(option) '\(text)' is not an ISO 8601 time; write it like 2026-03-01T09:30:00Z")
    }
    return t
}

/// Reads `--currency`: an active ISO 4217 currency with a minor unit, in either case.
func parseCurrency(_ text: String) throws -> CurrencyCode {
    do { return try CurrencyCode(validating: text) } catch { throw InvalidRequestError(error.description) }
}

func parseKilograms(_ text: String) throws -> CO2e {
    do { return try CO2e(kilograms: text) } catch { throw InvalidRequestError(error.description) }
}

func parsePeriod(start: String?, end: String?, required: Bool) throws -> Period? {
    switch (start, end) {
    case (nil, nil):
        if required { throw InvalidRequestError("give the period with --period-start and --period-end") }
        return nil
    case (let s?, let e?):
        let period = Period(
            start: try parseTime(s, option: "--period-start"), end: try parseTime(e, option: "--period-end"))
        guard period.start <= period.end else {
            throw InvalidRequestError("--period-start \(s) is after --period-end \(e)")
        }
        return period
    default:
        throw InvalidRequestError("give both --period-start and --period-end, or neither")
    }
}

/// One line saying what an update did.
func report(_ what: String, _ outcome: UpsertOutcome, _ result: UpdateResult<UpsertOutcome>) {
    if result.outcome == .asRequestedAfterRetry {
        // The last run of the mutation found nothing to change, after a write whose answer was
        // lost: this request's own earlier attempt, or another writer, made the change.
        print(
            "\(what) is recorded as requested (revision \(result.record.revision)); \(madeByEarlierAttempt)")
        return
    }
    switch outcome {
    case .inserted: print("added \(what) (revision \(result.record.revision))")
    case .replaced: print("replaced \(what) (revision \(result.record.revision))")
    case .unchanged: print("\(what) already recorded, nothing changed (revision \(result.record.revision))")
    }
}

/// What to say when a change is in place but this call cannot know whether it made it.
let madeByEarlierAttempt =
    "an earlier attempt of this request whose answer was lost, or another writer, made the change"

package enum FileHandleStderr {
    package static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes {
                Glibc.write(2, $0.baseAddress! + offset, $0.count - offset)
            }
            if n <= 0 { break }
            offset += n
        }
    }
}

/// How a program built from this package changes the `StoreOptions` of every command before it
/// runs: the package's test host installs fault injection and pauses here. The shipped
/// `carbonstore` never sets it, and nothing outside the package can.
package enum StoreHooks {
    private static let hook = Locked<(@Sendable (inout StoreOptions) throws -> Void)?>(nil)

    /// Installs the hook; call once, before the command runs.
    package static func install(_ configure: @escaping @Sendable (inout StoreOptions) throws -> Void) {
        hook.withLock { $0 = configure }
    }

    static func configure(_ options: inout StoreOptions) throws {
        try hook.withLock { $0 }?(&options)
    }
}
