"""The Scalable Backend Lab shop: the e-commerce backend the labs build and scale."""
