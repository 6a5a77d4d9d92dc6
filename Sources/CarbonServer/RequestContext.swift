import Hummingbird
import Logging
import Synchronization

/// The per-request state of the service: the request id, and the key that authenticated it.
public struct CarbonRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID = ""
    /// The id of the key that authenticated the request, set by the route, read by the log line.
    public let authenticatedKey = KeyIDBox()

    public init(source: Source) {
        coreContext = .init(source: source)
    }

    /// Bodies are read by the routes themselves, up to the configured limit.
    public var maxUploadSize: Int { 64 << 20 }
}

/// Where a route leaves the id of the key it accepted, for the request's log line.
public final class KeyIDBox: Sendable {
    private let storage = Mutex<String?>(nil)
    public var value: String? {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}
