"""gridgate's own IEC CIM profiles (XSDs written for gridgate, see README.md), shipped as
package data so that an installed gridgate finds them beside `adapters/`."""
