"""IEC CIM adapter: ESMP market documents (IEC 62325-451) and IEC 61968-9 MeterReadings.

The document layer is sans-IO: `parse` (bytes → `documents`), `emit` (documents → bytes),
`acknowledgements` (the answer to an inbound document), validated against gridgate's own
profiles in cim_profiles/ (`profiles`, `versions`) with the reason codes of `reasons`.
"""
