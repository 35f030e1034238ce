print("envmount")
