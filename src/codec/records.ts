// TypeScript shapes of the records in schemas/*.avsc, as avsc reads and writes them when the decimal
// logical type is registered (DecimalStringType) and timestamp logical types are not: amounts are
// decimal strings with exactly two fraction digits, timestamps are epoch microseconds (UTC) as plain
// numbers. Epoch micros stay exact in a double until the year 2255, and keeping them numeric avoids
// building a Date per record on hot paths.

/** Epoch microseconds, UTC. */
export type EpochMicros = number;

export const TRANSACTION_STATUSES = ['completed', 'pending', 'failed', 'reversed'] as const;
export type TransactionStatus = (typeof TRANSACTION_STATUSES)[number];

export const TRANSACTION_TYPES = [
  'payment',
  'transfer',
  'credit',
  'debit',
  'refund',
  'withdrawal',
  'deposit',
  'fee',
] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

export const JOB_EXECUTION_STATUSES = ['success', 'failed', 'running'] as const;
export type JobExecutionStatus = (typeof JOB_EXECUTION_STATUSES)[number];

export const NETWORK_TYPES = [
  'ACH',
  'SWIFT',
  'FEDWIRE',
  'CHIPS',
  'SEPA',
  'RTP',
  'FEDNOW',
  'FPS',
  'BACS',
  'CARD',
] as const;
export type NetworkType = (typeof NETWORK_TYPES)[number];

export const EXTRACTION_METHODS = ['API', 'SFTP', 'SCREEN_SCRAPE', 'DB_EXPORT'] as const;
export type ExtractionMethod = (typeof EXTRACTION_METHODS)[number];

export const ALERT_STATUSES = ['FIRING', 'RESOLVED'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

export const ALERT_SEVERITIES = ['critical', 'warning', 'info'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

// Categorical fields are typed as plain strings: the schemas keep them open so that new values can
// appear without a schema change, and a consumer must not assume the lists above are complete.

export interface BankingTransaction {
  transaction_id: string;
  account_number: string;
  /** decimal(18,2) as a string, e.g. "1234.50". */
  amount: string;
  currency: string;
  transaction_type: string;
  status: string;
  transaction_timestamp: EpochMicros;
  job_id: string | null;
  source_bank_id: string | null;
  destination_bank_id: string | null;
  clearinghouse_id: string | null;
  metadata: Record<string, string>;
}

export interface JobExecution {
  execution_id: string;
  job_id: string;
  banking_network_id: string;
  status: string;
  started_at: EpochMicros;
  finished_at: EpochMicros | null;
  duration_ms: number;
  records_extracted: number;
  data_size_bytes: number;
  error_message: string | null;
}

export interface BankingNetwork {
  network_id: string;
  network_name: string;
  network_type: string;
  region: string;
  country_code: string | null;
  currency: string;
  is_active: boolean;
  updated_at: EpochMicros;
}

export interface JobDefinition {
  job_id: string;
  job_name: string;
  extraction_method: string;
  banking_network_id: string;
  schedule: string | null;
  is_active: boolean;
  updated_at: EpochMicros;
}

export interface Alert {
  alert_id: string;
  dedup_key: string;
  rule_name: string;
  status: string;
  severity: string;
  summary: string;
  description: string | null;
  metric: string;
  value: number;
  threshold: number;
  labels: Record<string, string>;
  fired_at: EpochMicros;
  resolved_at: EpochMicros | null;
  runbook_url: string | null;
  source: string;
}
