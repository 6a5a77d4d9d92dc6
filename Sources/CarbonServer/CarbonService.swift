import CarbonStore
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// `carbonstore serve`: the API on Hummingbird, under swift-service-lifecycle with the engine.
///
/// The group runs the engine, the HTTP server and the drain service, and shuts them down in the
/// reverse order. On SIGTERM or SIGINT the drain service shuts down first: it stops taking requests (new ones get
/// 503 with `Retry-After`) and waits until those in flight have finished; then the HTTP server
/// closes. If that takes longer than the shutdown deadline, the process exits anyway.
public struct CarbonService: Sendable {
    public let api: CarbonAPI
    public let logger: Logger

    public init(api: CarbonAPI, logger: Logger) {
        self.api = api
        self.logger = logger
    }

    /// The Hummingbird application: the router, the listen address, the timeouts.
    public func application(
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol & Service {
        let c = api.configuration
        let header = TimeAmount.nanoseconds(c.headerTimeout.nanoseconds)
        let body = TimeAmount.nanoseconds(c.bodyTimeout.nanoseconds)
        let send = TimeAmount.nanoseconds(c.sendTimeout.nanoseconds)
        let metrics = api.metrics
        let logger = self.logger
        return Application(
            router: api.router(),
            server: .http1(
                configuration: .init(
                    // Outbound answers pass ParserErrorAnswer first (it is nearer the application),
                    // then RequestTimeoutHandler, which closes after a `Connection: close`.
                    additionalChannelHandlers: [
                        RequestTimeoutHandler(
                            header: header, body: body, send: send, maxBodyBytes: c.maxBodyBytes),
                        ParserErrorAnswer(metrics: metrics, logger: logger),
                    ],
                    idleTimeout: .nanoseconds(c.idleTimeout.nanoseconds))),
            configuration: .init(address: .hostname(c.host, port: c.port), serverName: "carbonstore"),
            onServerRunning: onServerRunning,
            logger: logger)
    }

    /// Runs until SIGTERM or SIGINT, then drains and returns (or exits the process at the deadline).
    public func run(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) async throws
    {
        let drainService = DrainService(
            drain: api.drain, deadline: api.configuration.shutdownDeadline, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: EngineService(store: api.store, logger: logger)),
                    .init(service: application(onServerRunning: onServerRunning)),
                    .init(service: drainService),
                ],
                gracefulShutdownSignals: Self.stopSignals(),
                logger: logger))
        try await group.run()
    }
}

extension CarbonService {
    /// SIGTERM and SIGINT, and SIGHUP (a closed terminal, a supervisor's hang-up) unless the
    /// process was started with it ignored (`nohup`): a hang-up drains, never cuts requests, and a
    /// service started to outlive its terminal does.
    static func stopSignals() -> [UnixSignal] {
        // The disposition, read by setting it and setting it back (`signal` on every platform;
        // `sigaction`'s field names differ). Handlers are C function pointers, compared by address.
        let previous = signal(SIGHUP, SIG_IGN)
        _ = signal(SIGHUP, previous)
        let ignored = unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
        return ignored ? [.sigterm, .sigint] : [.sigterm, .sigint, .sighup]
    }
}

/// The engine's place in the service group: it checks at start that storage and locks answer (and
/// says so in the log; `/readyz` keeps checking), and it is the first service up and the last down,
/// after the HTTP server has finished every request.
struct EngineService: Service {
    let store: Store
    let logger: Logger

    func run() async throws {
        do {
            try await store.checkReachable()
            logger.notice("storage and locks are reachable")
        } catch {
            logger.warning(
                "storage or locks are not reachable yet; /readyz answers 503 until they are",
                metadata: ["detail": .string(String(describing: error))])
        }
        try? await gracefulShutdown()
        logger.notice("engine stopped")
    }
}

/// Waits for the graceful shutdown, then drains the requests in flight. It is the last service of
/// the group, so it shuts down first, while the HTTP server still answers (with 503).
struct DrainService: Service {
    let drain: DrainState
    let deadline: Duration
    let logger: Logger

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: the group is failing (the server could not start); nothing to drain
        }
        logger.notice(
            "shutting down: new requests get 503", metadata: ["inFlight": .stringConvertible(drain.inFlight)])
        let deadline = self.deadline
        let logger = self.logger
        let drain = self.drain
        // The deadline holds whatever else hangs: exit the process when it passes.
        Task.detached {
            try? await Task.sleep(for: deadline)
            logger.error(
                "shutdown deadline passed; exiting with requests in flight",
                metadata: ["inFlight": .stringConvertible(drain.inFlight)])
            exit(1)
        }
        await drain.drain()
        logger.notice("no request in flight; closing the server")
    }
}
