import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

enum Placeholder {}
